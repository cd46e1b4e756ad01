"""Contract test: the service answers the monolith's catalog requests like the monolith.

The requests are the ones the monolith's workload generator sends (recorded while it runs
against the monolith), plus the catalog's filters, errors and staff writes in shadow mode.
After the relay has caught up, each request goes to both on the same data with the same
Host header, and the answers are compared with the shadow comparator
(``strangler_proxy.shadow.compare``). Differences listed in ``EXPECTED`` (each with its reason,
also in docs/extracted-catalog.md) are allowed; anything else fails.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import (
    SHADOW_SECRET,
    STRANGLER,
    SYNC_TOKEN,
    CatalogServer,
    MonolithServer,
    base_env,
    relay_argv,
)

from strangler_proxy import RecordedResponse, sign_marker
from strangler_proxy.shadow import compare

pytestmark = pytest.mark.slow

CATALOG = re.compile(r"^/api/(products|categories|brands|tags)/(\d+/)?(\?.*)?$")

# (path pattern, kind, when) -> reason. "when" narrows a rule to some requests.
EXPECTED: dict[tuple[str, str], str] = {
    ("$.price", "type"): "the deliberate discrepancy (docs/extracted-catalog.md)",
    ("$.results[*].price", "type"): "the deliberate discrepancy (docs/extracted-catalog.md)",
    ("$.created_at", "value"): "a shadow create stamps each side's own clock",
    ("$.updated_at", "value"): "a shadow create or update stamps each side's own clock",
}


# Whole requests whose answers differ by design: (method, path) -> reason.
EXPECTED_REQUESTS: dict[str, str] = {
    "delete-product-on-orders": "the service cannot see orders (another context): it answers "
    "204 where the monolith answers 409; route product deletes to the monolith until cutover",
}


def _product_on_orders(client: httpx.Client, base_url: str, staff: str) -> int:
    """A product the monolith refuses to delete because order lines point at it."""
    for pid in range(1, 60):
        path = f"/api/products/{pid}/"
        shadow = {"Authorization": f"Token {staff}", **_marker("DELETE", path)}
        if client.delete(f"{base_url}{path}", headers=shadow).status_code == 409:
            return pid
    raise AssertionError("no product of the seed is on an order")


def _marker(method: str, path: str) -> dict[str, str]:
    """The signed shadow marker the proxy would put on a copy of ``method path``."""
    return {"X-Strangler-Shadow": sign_marker(SHADOW_SECRET, method, path.partition("?")[0])}


def _general(path: str) -> str:
    return re.sub(r"\[\d+\]", "[*]", path)


class Recorder(httpx.HTTPTransport):
    """Passes the workload's requests through and remembers the catalog GETs."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        target = request.url.raw_path.decode()
        if request.method == "GET" and CATALOG.match(target):
            self.seen.append(target)
        return super().handle_request(request)


def _recorded(answer: httpx.Response) -> RecordedResponse:
    return RecordedResponse(answer.status_code, tuple(answer.headers.items()), answer.content)


def _extra_requests(staff: str, alice: str) -> list[tuple[str, str, dict[str, Any]]]:
    """What the workload does not send: filters, errors, and staff writes (as shadow)."""
    shadow = {"X-Strangler-Shadow": "1", "Authorization": f"Token {staff}"}
    reads = [
        "/api/products/?category=2&ordering=-price", "/api/products/?brand_slug=brand-001",
        "/api/products/?min_price=10&max_price=50&ordering=name", "/api/products/?tag=sale",
        "/api/products/?is_active=false", "/api/products/?page_size=100&page=2",
        "/api/products/?page=999", "/api/products/999999/", "/api/categories/?parent=1",
        "/api/categories/?search=home", "/api/brands/?ordering=-name&page_size=5",
        "/api/tags/", "/api/tags/1/", "/api/categories/3/", "/api/brands/2/",
    ]
    out: list[tuple[str, str, dict[str, Any]]] = [("GET", r, {}) for r in reads]
    good = {"sku": "NEW-1", "name": "New", "slug": "new-1", "category": 1, "brand": 1,
            "price": "12.00", "tags": ["sale"]}
    out += [
        ("POST", "/api/products/", {"json": good, "headers": shadow}),
        ("POST", "/api/products/", {"json": dict(good, sku="SKU-000001", price="-1",
                                                 category=999999), "headers": shadow}),
        ("PATCH", "/api/products/5/", {"json": {"name": "Renamed"}, "headers": shadow}),
        ("POST", "/api/brands/", {"json": {"name": "B", "slug": "not a slug"},
                                  "headers": shadow}),
        ("DELETE", "/api/categories/1/", {"headers": shadow}),
        ("POST", "/api/products/", {"json": good}),  # no credentials: 401
        ("POST", "/api/products/", {"json": good, "headers": {
            "Authorization": f"Token {alice}", "X-Strangler-Shadow": "1"}}),  # not staff
    ]
    return out


def test_service_answers_the_workload_like_the_monolith(tmp_path: Path) -> None:
    from legacy_monolith.workload import WorkloadSpec, run_workload

    # given the monolith seeded, and the service backfilled and following its outbox
    (tmp_path / "mono").mkdir()
    monolith = MonolithServer(tmp_path / "mono").prepare().start()
    server = CatalogServer(f"sqlite:///{tmp_path / 'catalog.sqlite3'}", tmp_path,
                           extra_env={"CATALOG_AUTH_URL": monolith.url})
    server.migrate()
    server.start()
    try:
        done = subprocess.run([*STRANGLER, "backfill", "--source-db", monolith.source_db,
                               "--service-url", server.url, "--token", SYNC_TOKEN,
                               "--hole-grace", "0"], env=base_env(), capture_output=True,
                              text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr
        # when the workload runs against the monolith (its catalog GETs are recorded)
        recorder = Recorder()
        run_workload(WorkloadSpec(monolith.url, requests=300, duration=30, seed=7,
                                  concurrency=2), transport=recorder)
        done = subprocess.run(relay_argv(monolith.source_db, f"{server.url}/internal/events/",
                                         "outbox_outboxevent", "monolith", "--once"),
                              env=base_env(), capture_output=True, text=True, timeout=120,
                              check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        requests = [("GET", p, {}) for p in dict.fromkeys(recorder.seen)]
        requests += _extra_requests(monolith.token("staff"), monolith.token("alice"))
        assert len(requests) > 40
        # then each answer matches, but for the listed, explained differences
        unexpected: list[str] = []
        allowed: Counter[str] = Counter()
        statuses: Counter[int] = Counter()
        host = {"Host": "shop.example"}
        with httpx.Client(timeout=10) as client:
            on_orders = _product_on_orders(client, monolith.url, monolith.token("staff"))
            path = f"/api/products/{on_orders}/"
            shadow = {"Authorization": f"Token {monolith.token('staff')}",
                      **_marker("DELETE", path), **host}
            a = client.delete(f"{monolith.url}{path}", headers=shadow)
            b = client.delete(f"{server.url}{path}", headers=shadow)
            assert (a.status_code, b.status_code) == (409, 204), EXPECTED_REQUESTS[
                "delete-product-on-orders"]
            for method, path, kwargs in requests:
                headers = {**host, **kwargs.pop("headers", {})}
                if "X-Strangler-Shadow" in headers:  # sign it for this request
                    headers.update(_marker(method, path))
                a = client.request(method, monolith.url + path, headers=headers, **kwargs)
                b = client.request(method, server.url + path, headers=headers, **kwargs)
                statuses[a.status_code] += 1
                for diff in compare(_recorded(a), _recorded(b)).differences:
                    key = (_general(diff.path), diff.kind)
                    if key in EXPECTED and (diff.kind != "value" or method != "GET"):
                        allowed[f"{key}: {EXPECTED[key]}"] += 1
                    else:
                        unexpected.append(f"{method} {path}: {diff.path} {diff.kind} "
                                          f"monolith={diff.monolith_value!r} "
                                          f"service={diff.service_value!r}")
        assert unexpected == [], "\n".join(unexpected[:40])
        # the comparison saw real traffic: successes, errors, and the deliberate difference
        assert {200, 201, 400, 401, 403, 404, 409} <= set(statuses), statuses
        assert any("deliberate" in k for k in allowed), allowed
        (tmp_path / "contract-allowed.json").write_text(json.dumps(allowed, indent=1))
    finally:
        server.stop()
        monolith.stop()
