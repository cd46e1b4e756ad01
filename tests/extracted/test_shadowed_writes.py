"""Shadowed writes are compared by what they change, through the real proxy (docs/shadow.md).

The monolith and the catalog service run under gunicorn, the service backfilled from the
monolith; ``strangler proxy`` shadows the brands and products routes with writes copied
(signed marker) and ``[shadow].monolith_outbox`` naming the monolith's database. A client's
write goes to the monolith for real, its copy to the service, which rolls it back and reports
its events in ``X-Strangler-Shadow-Changes``; the worker matches them with the monolith's
outbox events by the request id.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
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
    Process,
    base_env,
    relay_argv,
)

from extracted.sync.database import Database
from strangler_proxy import sign_marker
from strangler_proxy.shadow.store import open_store

pytestmark = pytest.mark.slow
WAIT = 60.0  # generous for a loaded 2-core machine; each wait returns as soon as it is met


def routes_text(monolith: str, catalog: str, store: Path, outbox: Path) -> str:
    routes = "".join(
        f'[[routes]]\nname = "{name}"\nmatch = {{ path_prefix = "{prefix}" }}\n'
        'mode = "shadow"\ntarget = "catalog"\nshadow = { writes = true, percent = 100 }\n'
        for name, prefix in (("catalog-brands", "/api/brands/"), ("catalog", "/api/products/")))
    return (f'[proxy]\nlisten = "127.0.0.1:0"\n\n[admin]\nlisten = "127.0.0.1:0"\n'
            f'token = "t"\n\n[shadow]\nstore = "{store}"\nmarker_secret = "{SHADOW_SECRET}"\n'
            f'monolith_outbox = "{outbox}"\nchanges_wait = 2.0\nnoise_percent = 0\n\n'
            f'[upstreams.monolith]\nurl = "{monolith}"\n\n[upstreams.catalog]\n'
            f'url = "{catalog}"\n\n{routes}')


def start_proxy(config: Path, log: Path) -> tuple[Process, str]:
    proc = Process([sys.executable, "-m", "strangler.cli", "proxy", "--config", str(config)],
                   base_env(STRANGLER_SHADOW_WORKER_PRIORITY="normal"), log).start()
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace") if log.exists() else ""
        for line in text.splitlines():
            if "listening on http://" in line:
                return proc, line.split("listening on http://")[1].split()[0]
        assert proc.proc is not None
        assert proc.proc.poll() is None, text[-2000:]
        time.sleep(0.1)
    raise AssertionError(f"proxy did not start:\n{log.read_text()[-2000:]}")


def record_for(store: Path, request_id: str) -> Any:
    """The diff record of one request, once the worker has stored it."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if store.exists():
            diffs = open_store(str(store))
            try:
                found = [r for r in diffs.records(bodies=True) if r.request_id == request_id]
            finally:
                diffs.close()
            if found:
                return found[0]
        time.sleep(0.2)
    raise AssertionError(f"no diff record for request {request_id}")


@pytest.mark.parametrize("databases", ["sqlite", "postgresql"], indirect=True)
def test_a_shadowed_write_is_compared_by_its_events(databases: Any, tmp_path: Path) -> None:
    # given the monolith, the service backfilled from it, and the proxy shadowing writes,
    # reading the monolith's outbox from its database (a SQLite file or PostgreSQL)
    pg = databases.vendor == "postgresql"
    (tmp_path / "mono").mkdir()
    monolith = MonolithServer(tmp_path / "mono", databases("shop") if pg else "")
    monolith.prepare().start()
    server = CatalogServer(databases("catalog"), tmp_path,
                           extra_env={"CATALOG_AUTH_URL": monolith.url})
    server.migrate()
    server.start()
    store = tmp_path / "diffs.sqlite3"
    config = tmp_path / "strangler.toml"
    config.write_text(routes_text(monolith.url, server.url, store, monolith.source_db))
    proxy: Process | None = None
    cleanup: list[Any] = []
    try:
        done = subprocess.run([*STRANGLER, "backfill", "--source-db", monolith.source_db,
                               "--service-url", server.url, "--token", SYNC_TOKEN,
                               "--hole-grace", "0"], env=base_env(), capture_output=True,
                              text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr
        proxy, address = start_proxy(config, tmp_path / "proxy.log")
        client = httpx.Client(base_url=f"http://{address}", timeout=20, headers={
            "Authorization": f"Token {monolith.token('staff')}"})
        cleanup.append(client.close)

        # when a write both sides make alike is shadowed
        same = client.patch("/api/brands/2/", json={"name": "Renamed alike"})
        assert same.status_code == 200, same.text
        # then the client never sees the service's changes, and the comparison matches:
        # the same answer and the same event (store.Brand:2 updated, same payload)
        assert "x-strangler-shadow-changes" not in same.headers
        matched = record_for(store, same.headers["x-request-id"])
        assert monolith_events(monolith, same.headers["x-request-id"]) == [
            ("store.Brand", "2", "updated")]  # the monolith's event carries the request id
        assert (matched.verdict, matched.differences) == ("match", ()), matched.differences
        assert not any(k.lower() == "x-strangler-shadow-changes"
                       for k, _ in matched.service_headers)

        # and so does a new row, paired with the monolith's by its type
        made = client.post("/api/brands/", json={"name": "New", "slug": "new-brand",
                                                 "country": "FR"})
        assert made.status_code == 201, made.text
        created = record_for(store, made.headers["x-request-id"])
        assert (created.verdict, created.differences) == ("match", ()), created.differences
        assert monolith_events(monolith, made.headers["x-request-id"]) == [
            ("store.Brand", str(made.json()["id"]), "created")]

        # when the service's copy of brand 3 has drifted (another country) and a write of
        # its name is shadowed
        query(server.database_url, "UPDATE catalog_brand SET country = 'XX' WHERE id = 3")
        differs = client.patch("/api/brands/3/", json={"name": "Renamed apart"})
        assert differs.status_code == 200, differs.text
        # then the events differ, reported as a difference of kind "change" with the values
        record = record_for(store, differs.headers["x-request-id"])
        changes = [d for d in record.differences if d["kind"] == "change"]
        assert record.verdict == "mismatch", record.service_body
        assert changes == [{"path": "changes.store.Brand:3.updated.payload.country",
                            "kind": "change", "monolith": monolith_country(monolith, 3),
                            "service": "XX"}], record.differences
        # and `strangler shadow report` lists it like any other difference
        done = subprocess.run([*STRANGLER, "shadow", "report", "--config", str(config),
                               "--route", "catalog-brands", "--json"], env=base_env(),
                              capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        listed = json.loads(done.stdout)["routes"][0]["differences"]
        assert any(d["kind"] == "change" and d["path"].endswith(".payload.country")
                   for d in listed), listed

        # when a write's events do not fit the header (a 40 KB description)
        path, body = "/api/products/4/", {"description": "d" * 40_000}
        direct = httpx.patch(server.url + path, json=body, timeout=20, headers={
            "Authorization": f"Token {monolith.token('staff')}", "X-Request-ID": "direct-1",
            "X-Strangler-Shadow": sign_marker(SHADOW_SECRET, "PATCH", path)})
        long = client.patch(path, json=body)
        # then the service cuts its report at 32 KB and says so
        assert direct.status_code == long.status_code == 200, direct.text
        report = direct.headers["x-strangler-shadow-changes"]
        assert len(report) <= 32 * 1024
        cut = json.loads(report)
        assert (cut["truncated"], cut["events_total"], cut["events"], cut["request_id"]) == (
            True, 1, [], "direct-1")
        # and the proxy compares what it can: the counts agree, so no "change" difference;
        # the answers' own differences (the deliberate price type, the write's time) remain
        record = record_for(store, long.headers["x-request-id"])
        assert {d["kind"] for d in record.differences} == {"type", "value"}, record.differences
        assert "x-strangler-shadow-changes" not in long.headers
    finally:
        for close in cleanup:
            close()
        if proxy is not None:
            proxy.stop()
        server.stop()
        monolith.stop()


def query(url: str, sql: str, *params: object) -> list[dict[str, Any]]:
    database = Database(url)
    try:
        return database.query(sql, params)
    finally:
        database.close()


def monolith_events(monolith: MonolithServer, request_id: str) -> list[tuple[str, str, str]]:
    rows = query(monolith.source_db, "SELECT aggregate_type, aggregate_id, event_type FROM "
                 "outbox_outboxevent WHERE request_id = ? ORDER BY id", request_id)
    return [(r["aggregate_type"], r["aggregate_id"], r["event_type"]) for r in rows]


def monolith_country(monolith: MonolithServer, brand: int) -> str:
    rows = query(monolith.source_db, "SELECT country FROM store_brand WHERE id = ?", brand)
    return str(rows[0]["country"])


def test_the_service_reports_an_over_cap_write_as_cut(tmp_path: Path) -> None:
    from strangler.shadow_changes import MAX_HEADER_BYTES, Changes, changes_header

    events = [{"aggregate_type": "store.Product", "aggregate_id": str(i), "type": "updated",
               "payload": {"description": "d" * 1000}} for i in range(50)]
    value = changes_header(Changes("r-1", events, [{"model": "catalog.Product", "pk": "1",
                                                    "action": "updated"}]))
    data = json.loads(value)
    assert len(value) <= MAX_HEADER_BYTES
    assert (data["truncated"], data["events_total"], data["rows_total"]) == (True, 50, 1)
    assert 0 < len(data["events"]) < 50
    assert data["events"] == events[:len(data["events"])]


# -- the ordering context: the demo's checkout ------------------------------------------------


def ordering_routes(monolith: str, ordering: str, store: Path, outbox: str) -> str:
    # each side stamps its own clock on a write: the times are compared by format only
    compare = '{ formats = { created_at = "iso8601", updated_at = "iso8601" } }'
    routes = "".join(
        f'[[routes]]\nname = "{name}"\nmatch = {{ {match} }}\nmode = "shadow"\n'
        f'target = "ordering"\nshadow = {{ writes = true, percent = 100 }}\n'
        f'compare = {compare}\n'
        for name, match in (("ordering-cart", 'path_prefix = "/api/cart/"'),
                            ("ordering-checkout", 'path = "/api/checkout/"')))
    return (f'[proxy]\nlisten = "127.0.0.1:0"\n\n[admin]\nlisten = "127.0.0.1:0"\n'
            f'token = "t"\n\n[shadow]\nstore = "{store}"\nmarker_secret = "{SHADOW_SECRET}"\n'
            f'monolith_outbox = "{outbox}"\nchanges_wait = 2.0\nnoise_percent = 0\n\n'
            f'[upstreams.monolith]\nurl = "{monolith}"\n\n[upstreams.ordering]\n'
            f'url = "{ordering}"\n\n{routes}')


def test_a_shadowed_checkout_is_compared_by_its_answer_and_its_changes(tmp_path: Path) -> None:
    # given the monolith publishing its ordering rows live, the ordering service backfilled
    # and following them through the relay, and the proxy shadowing cart and checkout writes
    (tmp_path / "mono").mkdir()
    monolith = MonolithServer(tmp_path / "mono").prepare().start()
    ordering = CatalogServer(f"sqlite:///{tmp_path / 'ordering.sqlite3'}", tmp_path,
                             extra_env={"ORDERING_AUTH_URL": monolith.url}, service="ordering")
    ordering.migrate()
    ordering.start()
    store, config = tmp_path / "diffs.sqlite3", tmp_path / "strangler.toml"
    config.write_text(ordering_routes(monolith.url, ordering.url, store, monolith.source_db))
    proxy: Process | None = None
    cleanup: list[Any] = []
    try:
        done = subprocess.run([*STRANGLER, "backfill", "--context", "ordering", "--source-db",
                               monolith.source_db, "--service-url", ordering.url, "--token",
                               SYNC_TOKEN], env=base_env(), capture_output=True, text=True,
                              timeout=120, check=False)
        assert done.returncode == 0, done.stderr
        proxy, address = start_proxy(config, tmp_path / "proxy.log")
        alice = {"Authorization": f"Token {monolith.token('alice')}"}
        client = httpx.Client(base_url=f"http://{address}", timeout=20, headers=alice)
        cleanup.append(client.close)
        home = client.get(f"{monolith.url}/api/addresses/").json()["results"][0]["id"]
        stocked = [r["id"] for r in query(
            monolith.source_db, "SELECT p.id AS id FROM store_product p WHERE p.is_active AND "
            "(SELECT SUM(s.quantity) FROM store_stocklevel s WHERE s.product_id = p.id) > 5 "
            "ORDER BY p.id LIMIT 2")]

        def relay_once() -> None:
            # between the requests, not during them: a live relay could bring the
            # monolith's checkout to the service before the copy of that checkout, which
            # would then meet an empty cart (docs/shadow.md, shadowed writes and a live sync)
            done = subprocess.run([*relay_argv(monolith.source_db,
                                               f"{ordering.url}/internal/events/"), "--once"],
                                  env=base_env(), capture_output=True, text=True, timeout=60,
                                  check=False)
            assert done.returncode == 0, done.stdout + done.stderr

        def shadowed_checkout(product: int) -> Any:
            added = client.post("/api/cart/items/", json={"product": product, "quantity": 1})
            assert added.status_code == 201, added.text
            record_for(store, added.headers["x-request-id"])  # its copy is done
            relay_once()
            item = added.json()["items"][0]["id"]
            assert query(ordering.database_url, "SELECT id FROM ordering_cartitem WHERE id = ?",
                         item), f"the relay did not bring cart item {item} to the service"
            answer = client.post("/api/checkout/", json={"shipping_address": home})
            assert answer.status_code == 201, answer.text
            record = record_for(store, answer.headers["x-request-id"])
            relay_once()
            return answer, record

        # when a checkout both sides make alike is shadowed
        answer, record = shadowed_checkout(stocked[0])
        # then the answers and the changes match: the order (once, with its number), its
        # line and the emptied cart, on the monolith's outbox and in the service's report
        events = monolith_events(monolith, answer.headers["x-request-id"])
        assert [(kind, change) for kind, _, change in events] == [
            ("orders.Order", "created"), ("orders.OrderLine", "created"),
            ("orders.CartItem", "deleted")]
        assert events[0][1] == str(answer.json()["id"])
        assert (record.verdict, record.differences) == ("match", ()), record.service_body

        # when the service's copy of the next product has drifted (another price)
        query(ordering.database_url, "UPDATE ordering_product SET price = '0.01' WHERE id = ?",
              stocked[1])
        answer, record = shadowed_checkout(stocked[1])
        # then the difference is reported in the answer and as changes (kind "change"):
        # the order's total and the line's unit price the service would have written
        assert record.verdict == "mismatch", record.service_body
        changes = {d["path"]: (d["monolith"], d["service"])
                   for d in record.differences if d["kind"] == "change"}
        price = answer.json()["lines"][0]["unit_price"]
        assert changes == {
            "changes.orders.Order:new.created.payload.total": (answer.json()["total"], "0.01"),
            "changes.orders.OrderLine:new.created.payload.unit_price": (price, "0.01"),
        }, record.differences
    finally:
        for close in cleanup:
            close()
        if proxy is not None:
            proxy.stop()
        ordering.stop()
        monolith.stop()
