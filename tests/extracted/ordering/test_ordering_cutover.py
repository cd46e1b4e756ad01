"""``strangler cutover ordering`` and ``--undo`` with the real monolith, service and relays.

The catalog's cutover test (``tests/extracted/test_cutover.py``) is the model. What ordering
adds: the reverse stream is the same stream as the saga's requests (the service's outbox to
the monolith's ``/internal/saga-events/``), and the participant's working copy of an order
is the row the reverse stream writes. So the test pays and cancels through the service with
both relays running as processes: the cancelled order row reaches the monolith *before* the
``refund_requested`` that follows it, over HTTP, and the charge must still be refunded and
the stock released (the participant answered "refunded 0.00" before, keeping both).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import (
    STRANGLER,
    SYNC_TOKEN,
    CatalogServer,
    MonolithServer,
    Process,
    base_env,
    relay_argv,
)

from extracted.sync.database import Database

pytestmark = pytest.mark.slow
ROUTES = (("ordering", "/api/orders/"), ("ordering-cart", "/api/cart/"),
          ("ordering-checkout", "/api/checkout/"), ("ordering-coupons", "/api/coupons/"))


def routes_text(monolith: str, service: str) -> str:
    routes = "\n".join(
        f'[[routes]]\nname = "{name}"\nmatch = {{ path_prefix = "{prefix}" }}\n'
        'mode = "monolith"\ntarget = "ordering"\n' for name, prefix in ROUTES)
    pay = ('[[routes]]\nname = "order-pay"\nmatch = { path_template = '
           '"/api/orders/{id}/pay/" }\nmode = "monolith"\ntarget = "ordering"\n')
    return (f'# kept by the edit\n[proxy]\nlisten = "127.0.0.1:0"\n\n'
            f'[admin]\nlisten = "127.0.0.1:0"\ntoken_env = "STRANGLER_ADMIN_TOKEN"\n\n'
            f'[upstreams.monolith]\nurl = "{monolith}"\n\n[upstreams.ordering]\n'
            f'url = "{service}"\n\n{pay}\n{routes}')


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=base_env(), capture_output=True, text=True, timeout=180,
                          check=False)


def _until(what: str, check: Callable[[], bool], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.1)


@pytest.mark.parametrize("databases", ["sqlite", "postgresql"], indirect=True)
def test_cutover_of_ordering_moves_the_writes_and_undo_loses_nothing(
        databases: Any, tmp_path: Path) -> None:
    # given a seeded monolith followed by the ordering service, both relays running
    pg = databases.vendor == "postgresql"
    (tmp_path / "mono").mkdir()
    monolith = MonolithServer(tmp_path / "mono", databases("shop") if pg else "")
    monolith.prepare().start()
    service = CatalogServer(databases("ordering"), tmp_path, service="ordering",
                            extra_env={"ORDERING_AUTH_URL": monolith.url})
    service.migrate()
    service.start()
    token = monolith.token("alice")
    auth = {"Authorization": f"Token {token}"}
    on_monolith = httpx.Client(base_url=monolith.url, timeout=10, headers=auth)
    on_service = httpx.Client(base_url=service.url, timeout=10, headers=auth)
    raw = Database(monolith.source_db)
    routes = tmp_path / "strangler.toml"
    routes.write_text(routes_text(monolith.url, service.url))
    forward = relay_argv(monolith.source_db, f"{service.url}/internal/events/")
    reverse = relay_argv(service.database_url, f"{monolith.url}/internal/saga-events/",
                         "ordering_outboxevent", "ordering")
    relays = [Process(forward, base_env(), tmp_path / "forward.log"),
              Process(reverse, base_env(), tmp_path / "reverse.log")]
    cutover = [*STRANGLER, "cutover", "ordering", "--source-db", monolith.source_db,
               "--service-db", service.database_url, "--service-url", service.url,
               "--monolith-url", monolith.url, "--token", SYNC_TOKEN, "--routes", str(routes),
               "--audit-log", str(tmp_path / "audit.jsonl"), "--actor", "test", "--json"]
    try:
        done = _run([*STRANGLER, "backfill", "--context", "ordering", "--source-db",
                     monolith.source_db, "--service-url", service.url, "--token", SYNC_TOKEN])
        assert done.returncode == 0, done.stderr[-2000:]
        for relay in relays:
            relay.start()
        address = on_monolith.get("/api/addresses/").json()["results"][0]["id"]
        added = on_monolith.post("/api/cart/items/", json={"product": 1, "quantity": 1})
        assert added.status_code == 201, added.text
        # when ordering is cut over
        done = _run(cutover)
        report = json.loads(done.stdout)
        assert (done.returncode, report["ok"]) == (0, True), done.stdout + done.stderr
        assert report["pause"] < 10
        # then the routes point at the service, comments kept
        text = routes.read_text()
        assert text.startswith("# kept by the edit")
        assert text.count('mode = "service"') == 5
        # and the monolith refuses ordering writes, through its API and raw SQL
        refused = on_monolith.post("/api/cart/items/", json={"product": 2, "quantity": 1})
        assert (refused.status_code, refused.json()["code"]) == (503, "fenced"), refused.text
        with pytest.raises(Exception, match="fenced"):
            raw.query("UPDATE orders_order SET total = 0 WHERE id = 1")
        # and the service took the monolith's last cart write over
        cart = on_service.get("/api/cart/").json()
        assert [i["product"]["id"] for i in cart["items"]] == [1], cart

        def buy(product: int) -> int:
            assert on_service.post("/api/cart/items/", json={
                "product": product, "quantity": 1}).status_code == 201
            made = on_service.post("/api/checkout/", json={"shipping_address": address})
            assert made.status_code == 201, made.text
            order = int(made.json()["id"])
            assert on_service.post(f"/api/orders/{order}/pay/", json={"method": "card"}
                                   ).status_code == 202
            _until(f"order {order} paid", lambda: on_service.get(
                f"/api/orders/{order}/").json()["status"] == "paid")
            return order

        # when the service takes orders, one paid and kept, one paid and then cancelled
        kept, cancelled = buy(3), buy(4)
        assert on_service.post(f"/api/orders/{cancelled}/cancel/").status_code == 200

        def monolith_has(order: int, status: str, charge: str) -> bool:
            rows = raw.query("SELECT o.status AS status, p.status AS charge FROM orders_order "
                             "o JOIN orders_paymentintent p ON p.order_id = o.id "
                             "WHERE o.id = ?", [order])
            return [(r["status"], r["charge"]) for r in rows] == [(status, charge)]

        # then the monolith's copy follows, and the cancel is refunded for real: the
        # cancelled row came first, the refund_requested after it, both over HTTP
        _until("the refund", lambda: monolith_has(cancelled, "cancelled", "refunded"))
        assert monolith_has(kept, "paid", "succeeded")
        [refund] = raw.query("SELECT r.amount AS amount FROM orders_refund r JOIN "
                             "orders_paymentintent p ON p.id = r.payment_intent_id "
                             "WHERE p.order_id = ?", [cancelled])
        assert float(refund["amount"]) > 0
        held = {r["order_id"]: int(r["units"]) for r in raw.query(
            "SELECT l.order_id AS order_id, SUM(s.quantity) AS units FROM "
            "store_stockreservation s JOIN orders_orderline l ON l.id = s.order_line_id "
            "WHERE NOT s.released AND l.order_id IN (?, ?) GROUP BY l.order_id",
            [kept, cancelled])}
        assert held == {kept: 2}  # its lines: the monolith's cart item (product 1) and 3
        # when it is undone while the service's last write has not been relayed
        relays[1].stop()
        last = on_service.post("/api/cart/items/", json={"product": 5, "quantity": 2})
        assert last.status_code == 201, last.text
        done = _run([*cutover, "--undo"])
        report = json.loads(done.stdout)
        assert (done.returncode, report["ok"]) == (0, True), done.stdout + done.stderr
        # then the monolith has it, owns ordering again, and the service is fenced
        [item] = [i["id"] for i in last.json()["items"] if i["product"]["id"] == 5]
        assert raw.query("SELECT quantity FROM orders_cartitem WHERE id = ?",
                         [item]) == [{"quantity": 2}]
        assert report["drained"]["reverse"] >= 1
        assert routes.read_text().count('mode = "monolith"') == 5
        again = on_monolith.post("/api/cart/items/", json={"product": 6, "quantity": 1})
        assert again.status_code == 201, again.text
        assert item not in [i["id"] for i in again.json()["items"] if i["product"]["id"] == 6]
        refused = on_service.post("/api/cart/items/", json={"product": 6, "quantity": 1})
        assert (refused.status_code, refused.json()["code"]) == (503, "fenced"), refused.text
        # and once the forward relay carried the monolith's write, both sides are equal
        _until("the forward relay", lambda: 6 in [i["product"]["id"] for i in on_service.get(
            "/api/cart/").json()["items"]])
        done = _run([*STRANGLER, "reconcile", "--context", "ordering", "--source-db",
                     monolith.source_db, "--service-url", service.url, "--token", SYNC_TOKEN])
        assert done.returncode == 0, done.stdout[-3000:]
        audit = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
        assert [(a["direction"], a["ok"], a["context"]) for a in audit] == [
            ("cutover", True, "ordering"), ("undo", True, "ordering")]
    finally:
        for relay in relays:
            relay.kill()
        raw.close()
        on_monolith.close()
        on_service.close()
        service.stop()
        monolith.stop()
