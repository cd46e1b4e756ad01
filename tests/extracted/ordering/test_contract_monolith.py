"""Contract test: the ordering service answers the monolith's ordering requests like it.

The monolith runs the workload (shoppers add to carts, check out and pay; staff ship), and
its ordering GETs are recorded; then ``strangler backfill --context ordering`` copies the
context into the service, and each recorded request, plus errors and shadow writes (signed
marker: both sides roll back), goes to both with the same Host header. The answers are
compared with the shadow comparator. Differences listed in ``EXPECTED`` (each with its
reason, also in docs/extracted-ordering.md) are allowed; anything else fails.
"""

from __future__ import annotations

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
)

from strangler_proxy import RecordedResponse, sign_marker
from strangler_proxy.shadow import compare

pytestmark = pytest.mark.slow

ORDERING = re.compile(r"^/api/(cart/|orders/(\d+/)?|coupons/(\d+/)?)(\?.*)?$")

# (path pattern, kind) -> reason; "value" rules apply to writes only (a shadow write stamps
# each side's own clock).
EXPECTED: dict[tuple[str, str], str] = {
    ("$.created_at", "value"): "a shadow write stamps each side's own clock",
    ("$.updated_at", "value"): "a shadow write stamps each side's own clock",
    ("$.items[*].id", "value"): "a new row's id: the monolith's id counter remembers rows "
    "deleted before the backfill, which the service never saw",
    ("$.id", "value"): "a new row's id (as above)",
    ("$.number", "value"): "an order's number is made from its id (as above)",
}


def _marker(method: str, path: str) -> dict[str, str]:
    return {"X-Strangler-Shadow": sign_marker(SHADOW_SECRET, method, path.partition("?")[0])}


def _general(path: str) -> str:
    return re.sub(r"\[\d+\]", "[*]", path)


class Recorder(httpx.HTTPTransport):
    """Passes the workload's requests through and remembers the ordering GETs."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, str]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        target = request.url.raw_path.decode()
        if request.method == "GET" and ORDERING.match(target):
            self.seen.append((target, request.headers.get("Authorization", "")))
        return super().handle_request(request)


def _recorded(answer: httpx.Response) -> RecordedResponse:
    return RecordedResponse(answer.status_code, tuple(answer.headers.items()), answer.content)


def _extra_requests(monolith: MonolithServer, client: httpx.Client
                    ) -> list[tuple[str, str, dict[str, Any]]]:
    """What the workload does not send: filters, errors, and writes (as shadow copies)."""
    alice = {"Authorization": f"Token {monolith.token('alice')}"}
    staff = {"Authorization": f"Token {monolith.token('staff')}"}
    address = client.get(f"{monolith.url}/api/addresses/", headers=alice).json()["results"][0]
    other = client.get(f"{monolith.url}/api/addresses/?page_size=1",
                       headers=staff).json()["results"]
    orders = client.get(f"{monolith.url}/api/orders/?ordering=id", headers=alice).json()
    pending = [o for o in orders["results"] if o["status"] == "pending"]
    shipped = [o for o in orders["results"] if o["status"] == "shipped"]
    coupon = client.get(f"{monolith.url}/api/coupons/?active=true", headers=staff).json()
    out: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", "/api/orders/?ordering=-total&page_size=5", {"headers": alice}),
        ("GET", "/api/orders/?search=ORD-&page=2&page_size=3", {"headers": alice}),
        ("GET", "/api/orders/999999/", {"headers": alice}),
        ("GET", "/api/orders/?status=cancelled", {"headers": staff}),
        ("GET", "/api/orders/", {}),  # 401
        ("GET", "/api/orders/", {"headers": {"Authorization": "Token nope"}}),  # 401
        ("GET", "/api/coupons/", {"headers": staff}),
        ("GET", "/api/coupons/", {"headers": alice}),  # 403
        ("GET", "/api/cart/", {"headers": alice}),
    ]
    writes: list[tuple[str, str, Any]] = [
        ("POST", "/api/cart/items/", {"product": 1, "quantity": 2}),
        ("POST", "/api/cart/items/", {"product": 999999}),
        ("POST", "/api/cart/items/", {"product": 1, "quantity": 100}),
        ("POST", "/api/checkout/", {"shipping_address": address["id"]}),  # empty cart: 400
        ("POST", "/api/coupons/", {"code": "SHADOW10", "percent_off": 10}),  # not staff: 403
    ]
    if other and other[0]["id"] != address["id"]:
        writes.append(("POST", "/api/checkout/", {"shipping_address": other[0]["id"]}))
    if pending:
        writes.append(("POST", f"/api/orders/{pending[0]['id']}/cancel/", None))
    if shipped:
        writes.append(("POST", f"/api/orders/{shipped[0]['id']}/cancel/", None))  # 409
    out += [(m, p, {"json": body, "headers": dict(alice, shadow="1")}) for m, p, body in writes]
    if coupon["results"]:
        out.append(("PATCH", f"/api/coupons/{coupon['results'][0]['id']}/",
                    {"json": {"percent_off": 15}, "headers": dict(staff, shadow="1")}))
    out.append(("POST", "/api/coupons/", {"json": {"code": "SHADOW10", "percent_off": 10},
                                          "headers": dict(staff, shadow="1")}))
    return out


def _backfill(monolith: MonolithServer, server: CatalogServer) -> str:
    done = subprocess.run([*STRANGLER, "backfill", "--context", "ordering", "--source-db",
                           monolith.source_db, "--service-url", server.url, "--token",
                           SYNC_TOKEN], env=base_env(), capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_service_answers_the_workload_like_the_monolith(tmp_path: Path) -> None:
    from legacy_monolith.workload import WorkloadSpec, run_workload

    # given the monolith seeded, after the workload (its ordering GETs recorded)
    (tmp_path / "mono").mkdir()
    monolith = MonolithServer(tmp_path / "mono").prepare().start()
    server = CatalogServer(f"sqlite:///{tmp_path / 'ordering.sqlite3'}", tmp_path,
                           extra_env={"ORDERING_AUTH_URL": monolith.url}, service="ordering")
    server.migrate()
    server.start()
    try:
        recorder = Recorder()
        run_workload(WorkloadSpec(monolith.url, requests=150, duration=20, seed=7,
                                  concurrency=2), transport=recorder)
        # when the ordering context is copied with the generic backfill
        assert "orders.Order" in _backfill(monolith, server)
        host = {"Host": "shop.example"}
        unexpected: list[str] = []
        allowed: Counter[str] = Counter()
        statuses: Counter[int] = Counter()
        with httpx.Client(timeout=10) as client:
            requests = [("GET", p, {"headers": {"Authorization": a}} if a else {})
                        for p, a in dict.fromkeys(recorder.seen)]
            requests += _extra_requests(monolith, client)
            assert len(requests) > 20
            # then each answer matches, but for the listed, explained differences
            for method, path, kwargs in requests:
                headers = {**host, **kwargs.pop("headers", {})}
                if headers.pop("shadow", None):
                    headers.update(_marker(method, path))
                a = client.request(method, monolith.url + path, headers=headers, **kwargs)
                b = client.request(method, server.url + path, headers=headers, **kwargs)
                statuses[a.status_code] += 1
                for diff in compare(_recorded(a), _recorded(b)).differences:
                    key = (_general(diff.path), diff.kind)
                    if key in EXPECTED and method != "GET":
                        allowed[f"{key}: {EXPECTED[key]}"] += 1
                    else:
                        unexpected.append(f"{method} {path}: {diff.path} {diff.kind} "
                                          f"monolith={diff.monolith_value!r} "
                                          f"service={diff.service_value!r}")
        assert unexpected == [], "\n".join(unexpected[:40])
        assert {200, 201, 400, 401, 403, 404, 409} <= set(statuses), statuses
        # and a shadowed checkout of a full cart answers the same order on both sides
        alice = {"Authorization": f"Token {monolith.token('alice')}", **host}
        with httpx.Client(timeout=10) as client:
            added = client.post(f"{monolith.url}/api/cart/items/", headers=alice,
                                json={"product": 2, "quantity": 1})
            assert added.status_code == 201, added.text
            _backfill(monolith, server)
            address = client.get(f"{monolith.url}/api/addresses/", headers=alice).json()
            body = {"shipping_address": address["results"][0]["id"]}
            shadow = {**alice, **_marker("POST", "/api/checkout/")}
            a = client.post(f"{monolith.url}/api/checkout/", headers=shadow, json=body)
            b = client.post(f"{server.url}/api/checkout/", headers=shadow, json=body)
        assert (a.status_code, b.status_code) == (201, 201), (a.text, b.text)
        assert b.headers["X-Strangler-Shadow-Rolled-Back"] == "1"
        kinds = {(_general(d.path), d.kind) for d in compare(_recorded(a), _recorded(b))
                 .differences}
        assert kinds <= set(EXPECTED), kinds
        assert a.json()["lines"] == b.json()["lines"]
        assert a.json()["total"] == b.json()["total"]
        # and the reconcile across the two databases finds them equal
        done = subprocess.run([*STRANGLER, "reconcile", "--context", "ordering",
                               "--source-db", monolith.source_db, "--service-url", server.url,
                               "--token", SYNC_TOKEN], env=base_env(), capture_output=True,
                              text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
    finally:
        server.stop()
        monolith.stop()
