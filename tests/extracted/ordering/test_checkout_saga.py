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
