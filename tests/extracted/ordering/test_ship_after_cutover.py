"""Shipping after ``strangler cutover ordering``, with the real monolith, service and relays.

Shipping stays in the monolith; after the cutover it writes the shipment (its own tables) and
asks the owner of the order's status with a ``ship_requested`` event (docs/extracted-ordering.md,
"Shipping after the cutover"). ``test_ordering_cutover.py`` is the model.
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
from test_ordering_cutover import routes_text

from extracted.sync.database import Database

pytestmark = pytest.mark.slow


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=base_env(), capture_output=True, text=True, timeout=180,
                          check=False)


def _until(what: str, check: Callable[[], bool], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.1)


@pytest.mark.parametrize("databases", ["postgresql"], indirect=True)
def test_shipping_after_the_cutover_asks_the_service(databases: Any, tmp_path: Path) -> None:
    # given a monolith whose ordering was cut over to the service, both relays running
    (tmp_path / "mono").mkdir()
    monolith = MonolithServer(tmp_path / "mono", databases("shop"))
    monolith.prepare().start()
    service = CatalogServer(databases("ordering"), tmp_path, service="ordering",
                            extra_env={"ORDERING_AUTH_URL": monolith.url})
    service.migrate()
    service.start()
    alice = {"Authorization": f"Token {monolith.token('alice')}"}
    staff = httpx.Client(base_url=monolith.url, timeout=10,
                         headers={"Authorization": f"Token {monolith.token('staff')}"})
    on_monolith = httpx.Client(base_url=monolith.url, timeout=10, headers=alice)
    on_service = httpx.Client(base_url=service.url, timeout=10, headers=alice)
    raw = Database(monolith.source_db)
    routes = tmp_path / "strangler.toml"
    routes.write_text(routes_text(monolith.url, service.url))
    forward = Process(relay_argv(monolith.source_db, f"{service.url}/internal/events/"),
                      base_env(), tmp_path / "forward.log")
    reverse_argv = relay_argv(service.database_url, f"{monolith.url}/internal/saga-events/",
                              "ordering_outboxevent", "ordering")
    relays = [forward, Process(reverse_argv, base_env(), tmp_path / "reverse.log")]
    try:
        done = _run([*STRANGLER, "backfill", "--context", "ordering", "--source-db",
                     monolith.source_db, "--service-url", service.url, "--token", SYNC_TOKEN])
        assert done.returncode == 0, done.stderr[-2000:]
        for relay in relays:
            relay.start()
        address = on_monolith.get("/api/addresses/").json()["results"][0]["id"]
        done = _run([*STRANGLER, "cutover", "ordering", "--source-db", monolith.source_db,
                     "--service-db", service.database_url, "--service-url", service.url,
                     "--monolith-url", monolith.url, "--token", SYNC_TOKEN, "--routes",
                     str(routes), "--audit-log", str(tmp_path / "audit.jsonl"), "--actor",
                     "test", "--json"])
        assert (done.returncode, json.loads(done.stdout)["ok"]) == (0, True), done.stdout

        def status_in_monolith(order: int) -> str:
            rows = raw.query("SELECT status FROM orders_order WHERE id = ?", [order])
            return str(rows[0]["status"]) if rows else ""  # not relayed yet

        def buy(product: int) -> int:
            assert on_service.post("/api/cart/items/", json={
                "product": product, "quantity": 1}).status_code == 201
            made = on_service.post("/api/checkout/", json={"shipping_address": address})
            order = int(made.json()["id"])
            assert on_service.post(f"/api/orders/{order}/pay/").status_code == 202
            _until(f"order {order} paid in the monolith's copy",
                   lambda: status_in_monolith(order) == "paid")
            return order

        shipped, cancelled = buy(3), buy(4)
        # when staff ship a paid order through the monolith
        answer = staff.post(f"/api/orders/{shipped}/ship/", json={"carrier": "dhl"})
        # then the shipment is made now, the status is asked of the owner (202)
        assert answer.status_code == 202, answer.text
        assert answer.json()["order"] == shipped
        _until("the service's order shipped", lambda: on_service.get(
            f"/api/orders/{shipped}/").json()["status"] == "shipped")
        _until("the monolith's copy shipped", lambda: status_in_monolith(shipped) == "shipped")
        assert raw.query("SELECT status FROM orders_paymentintent WHERE order_id = ?",
                         [shipped]) == [{"status": "succeeded"}]  # the charge is kept
        again = staff.post(f"/api/orders/{shipped}/ship/", json={"carrier": "ups"})
        assert again.status_code == 409, again.text
        assert raw.query("SELECT COUNT(*) AS n FROM orders_shipment WHERE order_id = ?",
                         [shipped]) == [{"n": 1}]
        # when an order is cancelled in the service while the monolith's copy still says paid
        relays[1].stop()
        assert on_service.post(f"/api/orders/{cancelled}/cancel/").status_code == 200
        answer = staff.post(f"/api/orders/{cancelled}/ship/", json={"carrier": "dhl"})
        assert answer.status_code == 202, answer.text
        shipment = int(answer.json()["id"])
        relays[1] = Process(reverse_argv, base_env(), tmp_path / "reverse-2.log").start()
        # then the service refuses it, the shipment is marked, the order stays cancelled
        _until("the rejection", lambda: raw.query(
            "SELECT status FROM orders_trackingevent WHERE shipment_id = ? ORDER BY id",
            [shipment]) == [{"status": "label_created"}, {"status": "ship_rejected"}])
        assert on_service.get(f"/api/orders/{cancelled}/").json()["status"] == "cancelled"
        _until("the refund", lambda: raw.query(
            "SELECT o.status AS o, p.status AS p FROM orders_order o JOIN "
            "orders_paymentintent p ON p.order_id = o.id WHERE o.id = ?",
            [cancelled]) == [{"o": "cancelled", "p": "refunded"}])
        tracking = staff.get(f"/api/shipments/{shipment}/tracking/")
        assert "ship_rejected" in tracking.text, tracking.text
    finally:
        for relay in relays:
            relay.kill()
        raw.close()
        for client in (staff, on_monolith, on_service):
            client.close()
        service.stop()
        monolith.stop()
