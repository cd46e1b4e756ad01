"""The monolith's side of the checkout saga (``legacy_monolith/outbox/participants.py``).

Requests are posted to ``/internal/saga-events/`` as the relay delivers them from the
ordering service's outbox; replies are read from this outbox. The whole saga under faults is
``tests/extracted/ordering/test_saga_jepsen.py``.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.db import connection
from rest_framework.test import APIClient

from legacy_monolith.orders.models import Order, PaymentIntent
from legacy_monolith.outbox.models import OutboxEvent
from legacy_monolith.store.models import StockLevel, StockReservation

pytestmark = pytest.mark.django_db

SYNC = {"HTTP_AUTHORIZATION": "Bearer strangler-demo-sync-token"}


def request(step: str, position: int, payload: dict[str, Any],
            event_id: str | None = None) -> dict[str, Any]:
    return {"id": event_id or str(uuid.uuid4()), "position": position,
            "aggregate_type": "ordering.CheckoutSaga", "aggregate_id": "900",
            "sequence": position, "type": "updated", "payload": dict(payload, step=step),
            "occurred_at": "2026-12-05T10:00:00Z"}


def pay_request(shop: Any, quantity: int, position: int = 1,
                event_id: str | None = None) -> dict[str, Any]:
    product = shop.products[0]
    return request("pay_requested", position, {
        "order": {"id": 900, "number": "ORD-00000900", "user_id": shop.alice.pk,
                  "shipping_address_id": shop.alice_address.pk,
                  "total": str(product.price * quantity), "currency": "EUR"},
        "lines": [{"id": 9001, "product_id": product.pk, "product_name": product.name,
                   "unit_price": str(product.price), "quantity": quantity}],
        "method": "card"}, event_id)


def deliver(events: list[dict[str, Any]]) -> dict[str, Any]:
    answer = APIClient().post("/internal/saga-events/", {
        "stream": "ordering", "position": max(e["position"] for e in events),
        "events": events}, format="json", **SYNC)
    assert answer.status_code == 200, answer.content
    result: dict[str, Any] = answer.json()
    return result


def replies() -> list[dict[str, Any]]:
    return [e.payload for e in OutboxEvent.objects.filter(
        aggregate_type="payments.CheckoutReply").order_by("id")]


def reserved(shop: Any) -> int:
    return sum(r.quantity for r in StockReservation.objects.filter(
        order_line_id=9001, released=False))


def test_pay_charges_and_reserves_once_even_when_delivered_twice(shop: Any) -> None:
    event = pay_request(shop, 6)
    assert deliver([event, event])["duplicates"] == 1
    assert deliver([event])["duplicates"] == 1
    assert [r["step"] for r in replies()] == ["paid"]
    assert Order.objects.get(pk=900).status == "paid"
    assert PaymentIntent.objects.filter(order_id=900).count() == 1
    assert reserved(shop) == 6
    assert sum(StockLevel.objects.filter(product=shop.products[0])
               .values_list("quantity", flat=True)) == 2  # 8 on hand, 6 taken


def test_out_of_stock_is_refused_with_no_charge_and_no_reservation(shop: Any) -> None:
    deliver([pay_request(shop, 9)])  # 8 on hand
    [reply] = replies()
    assert reply["step"] == "payment_failed"
    assert "Not enough stock" in reply["reason"]
    assert Order.objects.get(pk=900).status == "pending"
    assert not PaymentIntent.objects.filter(order_id=900).exists()
    assert reserved(shop) == 0


def test_refund_gives_the_money_and_the_stock_back(shop: Any) -> None:
    deliver([pay_request(shop, 2)])
    deliver([request("refund_requested", 2, {"order_id": 900, "reason": "cancelled"})])
    assert [r["step"] for r in replies()] == ["paid", "refunded"]
    assert replies()[-1]["refunded"] == str(PaymentIntent.objects.get(order_id=900).amount)
    assert PaymentIntent.objects.get(order_id=900).status == "refunded"
    assert reserved(shop) == 0
    # a refund asked again answers again, and refunds nothing more
    deliver([request("refund_requested", 3, {"order_id": 900, "reason": "cancelled"})])
    assert replies()[-1] == {"step": "refunded", "refunded": "0.00", "order_id": 900}


def order_row(shop: Any, status: str, sequence: int, updated_at: str) -> dict[str, Any]:
    """The service's ``orders.Order`` row event for order 900, as its outbox writes it."""
    product = shop.products[0]
    return {"id": str(uuid.uuid4()), "position": 100 + sequence,
            "aggregate_type": "orders.Order", "aggregate_id": "900", "sequence": sequence,
            "type": "created" if sequence == 1 else "updated",
            "payload": {"number": "ORD-00000900", "user_id": shop.alice.pk, "status": status,
                        "shipping_address_id": shop.alice_address.pk,
                        "total": str(product.price * 2), "currency": "EUR",
                        "coupon_id": None, "created_at": "2026-12-05T10:00:00+00:00",
                        "updated_at": updated_at},
            "occurred_at": "2026-12-05T10:00:00Z"}


def test_the_services_rows_are_written_into_the_monolith_tables(shop: Any) -> None:
    # the reverse stream: the service's order reaches orders_order, at most once, in order
    created = order_row(shop, "pending", 1, "2026-12-05T10:00:00+00:00")
    assert deliver([created])["applied"] == 1
    assert Order.objects.get(pk=900).status == "pending"
    later = order_row(shop, "cancelled", 2, "2026-12-05T10:05:00+00:00")
    older = dict(order_row(shop, "paid", 1, "2026-12-05T10:01:00+00:00"), id=str(uuid.uuid4()))
    assert deliver([later, older])["stale"] == 1  # sequence 1 again: stale
    assert Order.objects.get(pk=900).status == "cancelled"
    assert replies() == []


def test_a_cancelled_row_before_refund_requested_still_refunds(shop: Any) -> None:
    # given order 900 paid through the saga (charge and reservations held here)
    deliver([order_row(shop, "pending", 1, "2026-12-05T10:00:00+00:00"),
             pay_request(shop, 2, position=2)])
    assert (Order.objects.get(pk=900).status, reserved(shop)) == ("paid", 2)
    # when the service cancels it: its outbox has the cancelled row, then refund_requested
    # (one transaction, in that order), both in one batch of the relay
    deliver([order_row(shop, "cancelled", 2, "2026-12-05T10:05:00+00:00"),
             request("refund_requested", 3, {"order_id": 900, "reason": "cancelled"})])
    # then the charge is refunded and the stock released, not "refunded 0.00"
    intent = PaymentIntent.objects.get(order_id=900)
    assert replies()[-1] == {"step": "refunded", "refunded": str(intent.amount),
                             "order_id": 900}
    assert intent.status == "refunded"
    assert reserved(shop) == 0
    # and the copy is the service's row: cancelled, with the service's updated_at
    order = Order.objects.get(pk=900)
    assert order.status == "cancelled"
    assert order.updated_at.isoformat() == "2026-12-05T10:05:00+00:00"


def test_the_services_orders_written_here_are_not_published_back(shop: Any) -> None:
    # the order copy and its payment belong to the service: only the reply and the stock
    # fact (the catalog's in_stock) are published, never an orders.* row
    mark = OutboxEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0
    deliver([pay_request(shop, 1)])
    published = {e.aggregate_type for e in OutboxEvent.objects.filter(id__gt=mark)}
    assert "payments.CheckoutReply" in published
    assert not {t for t in published if t.startswith("orders.")}, published


class _Connection:
    """Django's connection with the face ``extracted.sync.fence.install`` uses."""

    vendor = property(lambda self: connection.vendor)

    def query(self, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            if cursor.description is None:
                return []
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


@pytest.fixture
def ordering_moved(paid_order: Order) -> None:
    """What ``strangler cutover ordering`` leaves in the monolith: the fence's triggers and
    a fence row for each ordering table (the real ones, ``extracted/sync/fence.py``), after
    the order was paid."""
    from extracted.sync.fence import install

    tables = ("orders_order", "orders_orderline", "orders_cart", "orders_cartitem",
              "orders_coupon")
    install(_Connection(), tables, "ordering")  # type: ignore[arg-type]
    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute("INSERT INTO strangler_fence (table_name, context, open) "
                           "VALUES (%s, 'ordering', 0)", [table])


def test_ship_after_the_cutover_asks_the_owner_and_keeps_the_status(
        ordering_moved: None, staff_client: APIClient, paid_order: Order) -> None:
    from legacy_monolith.orders.models import Shipment

    mark = OutboxEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0
    # when staff ship a paid order after the cutover
    answer = staff_client.post(f"/api/orders/{paid_order.pk}/ship/", {"carrier": "dhl"},
                               HTTP_X_REQUEST_ID="req-ship-1")
    # then the shipment is made here, and the status is asked of the owner (202), not written
    assert answer.status_code == 202, answer.content
    shipment = Shipment.objects.get(pk=answer.json()["id"])
    assert [e.status for e in shipment.events.all()] == ["label_created"]
    assert shipment.lines.count() == paid_order.lines.count()
    assert Order.objects.get(pk=paid_order.pk).status == "paid"
    [event] = OutboxEvent.objects.filter(id__gt=mark)
    assert (event.aggregate_type, event.aggregate_id, event.request_id) == (
        "payments.CheckoutReply", str(paid_order.pk), "req-ship-1")
    assert event.payload == {"step": "ship_requested", "order_id": paid_order.pk,
                             "shipment_id": shipment.pk, "request_id": "req-ship-1"}
    # and a second ship while the copy still says paid is refused: one shipment
    again = staff_client.post(f"/api/orders/{paid_order.pk}/ship/", {"carrier": "dhl"})
    assert again.status_code == 409, again.content
    assert "being shipped already" in again.json()["detail"]


def test_a_rejected_ship_marks_the_shipment_once(
        ordering_moved: None, staff_client: APIClient, paid_order: Order) -> None:
    shipment = staff_client.post(f"/api/orders/{paid_order.pk}/ship/", {"carrier": "dhl"}
                                 ).json()["id"]
    rejected = request("ship_rejected", 1, {
        "order_id": paid_order.pk, "shipment_id": shipment, "request_id": "",
        "reason": f"Order {paid_order.number} is cancelled; only paid orders can be shipped."})
    # when the owner's rejection is delivered (twice: at least once)
    assert deliver([rejected])["applied"] == 1
    assert deliver([rejected])["duplicates"] == 1
    # then the shipment carries it once, with the reason, on its tracking
    tracking = staff_client.get(f"/api/shipments/{shipment}/tracking/").json()
    assert [(t["status"], t["location"]) for t in tracking] == [
        ("label_created", "warehouse"),
        ("ship_rejected", f"Order {paid_order.number} is cancelled; only paid orders can be "
                          "shipped.")]
    # and it no longer counts as the order's shipment
    assert staff_client.post(f"/api/orders/{paid_order.pk}/ship/", {"carrier": "dhl"}
                             ).status_code == 202


def test_a_shipped_row_from_the_owner_updates_a_charged_order(shop: Any) -> None:
    # given order 900 paid through the saga (the charge is held here)
    deliver([order_row(shop, "pending", 1, "2026-12-05T10:00:00+00:00"),
             pay_request(shop, 2, position=2)])
    # when the service's row says shipped (its answer to ship_requested)
    deliver([order_row(shop, "shipped", 2, "2026-12-05T10:05:00+00:00")])
    # then the copy follows, and the charge and the reservations are kept
    assert Order.objects.get(pk=900).status == "shipped"
    assert PaymentIntent.objects.get(order_id=900).status == "succeeded"
    assert reserved(shop) == 2
