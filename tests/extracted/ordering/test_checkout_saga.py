"""The process manager of the checkout saga, in the service: requests, replies, compensation.

The monolith's side (``legacy_monolith/outbox/participants.py``) and the whole saga under
faults are in ``test_saga_jepsen.py``; here the replies are posted as the relay would.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from rest_framework.test import APIClient

from extracted.ordering.models import CheckoutSaga, Order, OutboxEvent, Product
from extracted.ordering.saga import waiting
from extracted.servicekit.auth import CallerIdentity

pytestmark = pytest.mark.django_db

ALICE = CallerIdentity(username="alice", is_staff=False, id=5)


@pytest.fixture
def alice() -> APIClient:
    client = APIClient()
    client.force_authenticate(user=ALICE, token="t")  # type: ignore[arg-type]
    return client


@pytest.fixture
def order(alice: APIClient) -> dict[str, Any]:
    from extracted.ordering.models import ProductAvailability

    Product.objects.create(id=1, sku="SKU-1", name="Mug", price="9.50")
    ProductAvailability.objects.create(product_id=1, available=5)
    alice.post("/api/cart/items/", {"product": 1, "quantity": 2})
    made: dict[str, Any] = alice.post("/api/checkout/", {"shipping_address": 7}).json()
    return made


def requests_sent() -> list[tuple[str, dict[str, Any]]]:
    rows = OutboxEvent.objects.filter(aggregate_type="ordering.CheckoutSaga").order_by("id")
    return [(e.payload["step"], e.payload) for e in rows]


def reply(sync: APIClient, order_id: int, kind: str, position: int, **payload: Any) -> Any:
    event = {"id": str(uuid.uuid4()), "position": position,
             "aggregate_type": "payments.CheckoutReply", "aggregate_id": str(order_id),
             "sequence": position, "type": "updated",
             "payload": dict(payload, step=kind, order_id=order_id),
             "occurred_at": "2026-12-05T10:00:00Z"}
    answer = sync.post("/internal/events/", {"stream": "monolith", "events": [event]},
                       format="json")
    assert answer.status_code == 200, answer.content
    return answer.json()


def test_pay_requests_and_a_paid_reply_makes_the_order_paid(
        alice: APIClient, sync: APIClient, order: dict[str, Any]) -> None:
    # when
    answer = alice.post(f"/api/orders/{order['id']}/pay/", {"method": "card"})
    # then the order is still pending and the request carries the order and its lines
    assert (answer.status_code, answer.json()["status"]) == (202, "pending")
    [(kind, payload)] = requests_sent()
    assert kind == "pay_requested"
    assert payload["order"]["total"] == "19.00"
    assert [(x["product_id"], x["quantity"]) for x in payload["lines"]] == [(1, 2)]
    assert [w["state"] for w in waiting()] == ["pay_requested"]
    again = alice.post(f"/api/orders/{order['id']}/pay/")
    assert (again.status_code, again.json()["detail"]) == (
        409, f"Order {order['number']} is being paid already; wait for the payment.")
    # when the monolith replies (twice: at least once delivery)
    first = reply(sync, order["id"], "paid", 1, payment=3)
    assert first["applied"] == 1, first
    assert reply(sync, order["id"], "paid", 2, payment=3)["applied"] == 1  # a no-op
    assert Order.objects.get(pk=order["id"]).status == "paid"
    assert CheckoutSaga.objects.get().state == "paid"
    assert waiting() == []


def test_a_refused_payment_leaves_the_order_pending_and_payable(
        alice: APIClient, sync: APIClient, order: dict[str, Any]) -> None:
    alice.post(f"/api/orders/{order['id']}/pay/")
    reply(sync, order["id"], "payment_failed", 1, reason="Not enough stock for SKU-1.")
    assert Order.objects.get(pk=order["id"]).status == "pending"
    assert CheckoutSaga.objects.get().reason == "Not enough stock for SKU-1."
    assert alice.post(f"/api/orders/{order['id']}/pay/").status_code == 202  # a new attempt


@pytest.mark.parametrize("cancel_before_reply", [True, False])
def test_a_cancel_after_or_during_payment_is_compensated(
        alice: APIClient, sync: APIClient, order: dict[str, Any],
        cancel_before_reply: bool) -> None:
    alice.post(f"/api/orders/{order['id']}/pay/")
    if cancel_before_reply:
        assert alice.post(f"/api/orders/{order['id']}/cancel/").json()["status"] == "cancelled"
    reply(sync, order["id"], "paid", 1, payment=3)
    if not cancel_before_reply:
        assert alice.post(f"/api/orders/{order['id']}/cancel/").json()["status"] == "cancelled"
    # then the charge is asked back, and the saga waits for it
    assert [k for k, _ in requests_sent()] == ["pay_requested", "refund_requested"]
    assert [w["state"] for w in waiting()] == ["refund_requested"]
    reply(sync, order["id"], "refunded", 2, refunded="19.00")
    assert CheckoutSaga.objects.get().state == "refunded"
    assert Order.objects.get(pk=order["id"]).status == "cancelled"


def test_a_cancel_of_an_order_paid_before_the_cutover_is_compensated(
        alice: APIClient, sync: APIClient, order: dict[str, Any]) -> None:
    # given an order the monolith charged before the cutover: paid here, and no saga
    Order.objects.filter(pk=order["id"]).update(status="paid")
    # when it is cancelled, the monolith is asked to give the charge back
    assert alice.post(f"/api/orders/{order['id']}/cancel/").json()["status"] == "cancelled"
    assert [k for k, _ in requests_sent()] == ["refund_requested"]
    reply(sync, order["id"], "refunded", 1, refunded="19.00")
    assert CheckoutSaga.objects.get().state == "refunded"
    # and a pending order cancelled asks nothing
    Order.objects.filter(pk=order["id"]).update(status="pending")
    CheckoutSaga.objects.all().delete()
    alice.post(f"/api/orders/{order['id']}/cancel/")
    assert [k for k, _ in requests_sent()] == ["refund_requested"]


def test_a_reply_for_an_unknown_saga_is_a_dead_letter(sync: APIClient) -> None:
    counts = reply(sync, 424242, "paid", 1)
    assert counts["dead_letters"] == 1


def ship_request(sync: APIClient, order_id: int, position: int, event_id: str = "") -> Any:
    event = {"id": event_id or str(uuid.uuid4()), "position": position,
             "aggregate_type": "payments.CheckoutReply", "aggregate_id": str(order_id),
             "sequence": position, "type": "updated",
             "payload": {"step": "ship_requested", "order_id": order_id, "shipment_id": 70,
                         "request_id": "req-ship-1"},
             "occurred_at": "2026-12-05T10:00:00Z"}
    answer = sync.post("/internal/events/", {"stream": "monolith", "events": [event]},
                       format="json")
    assert answer.status_code == 200, answer.content
    return answer.json()


def order_events(order_id: int) -> list[str]:
    return [e.payload["status"] for e in OutboxEvent.objects.filter(
        aggregate_type="orders.Order", aggregate_id=str(order_id)).order_by("id")]


def test_ship_requested_makes_a_paid_order_shipped_at_most_once(
        sync: APIClient, order: dict[str, Any]) -> None:
    # given an order paid before the cutover (no saga here)
    Order.objects.filter(pk=order["id"]).update(status="paid")
    # when the monolith's shipping asks, and the relay delivers it twice
    first = ship_request(sync, order["id"], 1, event_id="e-ship-1")
    assert first["applied"] == 1, first
    assert ship_request(sync, order["id"], 1, event_id="e-ship-1")["duplicates"] == 1
    # then the order is shipped and its row published once (the monolith's copy follows)
    assert Order.objects.get(pk=order["id"]).status == "shipped"
    assert order_events(order["id"]).count("shipped") == 1
    # and another request for the order changes nothing and rejects nothing
    assert ship_request(sync, order["id"], 2)["applied"] == 1
    assert order_events(order["id"]).count("shipped") == 1
    assert requests_sent() == []


def test_ship_requested_for_an_order_no_longer_paid_is_rejected(
        alice: APIClient, sync: APIClient, order: dict[str, Any]) -> None:
    # given an order paid, then cancelled here before the monolith's copy knew it
    Order.objects.filter(pk=order["id"]).update(status="paid")
    assert alice.post(f"/api/orders/{order['id']}/cancel/").json()["status"] == "cancelled"
    # when shipping asks
    ship_request(sync, order["id"], 1)
    # then the order stays cancelled, and the monolith is told which shipment and why
    assert Order.objects.get(pk=order["id"]).status == "cancelled"
    assert [k for k, _ in requests_sent()] == ["refund_requested", "ship_rejected"]
    rejected = requests_sent()[-1][1]
    assert (rejected["order_id"], rejected["shipment_id"], rejected["request_id"]) == (
        order["id"], 70, "req-ship-1")
    assert rejected["reason"] == (f"Order {order['number']} is cancelled; only paid orders "
                                  "can be shipped.")


def test_ship_requested_for_an_unknown_order_is_a_dead_letter(sync: APIClient) -> None:
    assert ship_request(sync, 4242, 1)["dead_letters"] == 1
