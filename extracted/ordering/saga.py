"""The checkout saga's process manager: paying an order across three contexts.

In the monolith, ``pay`` was one transaction: charge (payments), status (ordering), stock
reservations (inventory), notification. Here the order lives in this service and the rest
in the monolith, so the step is a saga driven by outbox events, each step one local
transaction with the event it sends:

1. ``request_payment`` (``POST /api/orders/<id>/pay/``): the order must be pending and not
   being paid; a ``CheckoutSaga`` row and a ``pay_requested`` event (the order, its lines,
   the method) are written together. The answer is 202: the order is still pending.
2. The monolith's participant (``legacy_monolith/outbox/participants.py``) charges and
   reserves every line in one of its transactions, or neither, and replies ``paid`` or
   ``payment_failed``.
3. ``on_reply`` applies the reply (delivered by the relay to ``/internal/events/``):
   ``paid`` makes the order paid; ``payment_failed`` leaves it pending (the monolith's answer
   to a refused payment); a ``paid`` for an order cancelled meanwhile starts the
   compensation: ``refund_requested``, answered ``refunded`` once the charge is refunded and
   the stock released.

Why it holds: every request and reply is written in the transaction of the state change it
belongs to (no lost step), both sides apply each event id at most once (no double charge or
reservation), and the charge and the reservations are one transaction on the monolith's
side (no charge without stock). What is given up: between 1 and 3 the order is ``pending``
while the money may already be taken; ``strangler ordering sagas`` lists the sagas waiting.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from extracted.ordering.errors import Conflict
from extracted.ordering.models import CheckoutSaga, Order
from extracted.servicekit.outbox import publish, publish_event
from extracted.sync import BadEvent, OutboxEvent

REQUESTS = "ordering.CheckoutSaga"
REPLIES = "payments.CheckoutReply"


def _order_payload(order: Order) -> dict[str, Any]:
    return {
        "id": order.pk, "number": order.number, "user_id": order.user_id,
        "shipping_address_id": order.shipping_address_id, "total": str(order.total),
        "currency": order.currency,
    }


def _lines(order: Order) -> list[dict[str, Any]]:
    return [{"id": line.pk, "product_id": line.product_id, "product_name": line.product_name,
             "unit_price": str(line.unit_price), "quantity": line.quantity}
            for line in order.lines.all()]


@transaction.atomic
def request_payment(order: Order, method: str) -> CheckoutSaga:
    """Start (or restart, after a refusal) paying a pending order; see the module doc."""
    order = Order.objects.select_for_update().get(pk=order.pk)
    if order.status != Order.Status.PENDING:
        raise Conflict(f"Order {order.number} is {order.status}; only pending orders can be paid.")
    saga = CheckoutSaga.objects.select_for_update().filter(order_id=order.pk).first()
    if saga is not None and saga.state in CheckoutSaga.WAITING:
        raise Conflict(f"Order {order.number} is being paid already; wait for the payment.")
    if saga is None:
        saga = CheckoutSaga(order_id=order.pk)
    saga.state, saga.method, saga.reason, saga.updated_at = ("pay_requested", method, "",
                                                             timezone.now())
    saga.save()
    _send(order.pk, "pay_requested",
          {"order": _order_payload(order), "lines": _lines(order), "method": method})
    return saga


def on_cancel(order: Order, was_paid: bool = False) -> None:
    """Called in the cancel's transaction: a paid order's charge must be given back.

    An order paid in the monolith before the cutover has no saga here: one is started for
    the compensation alone (the monolith's participant refunds the charge it holds).
    """
    saga = CheckoutSaga.objects.select_for_update().filter(order_id=order.pk).first()
    if saga is not None and saga.state == "paid":
        _compensate(saga, "cancelled after payment")
    elif saga is None and was_paid:
        saga = CheckoutSaga.objects.create(order_id=order.pk, state="paid", method="")
        _compensate(saga, "cancelled after payment (paid before the cutover)")


def _compensate(saga: CheckoutSaga, reason: str) -> None:
    saga.state, saga.reason, saga.updated_at = "refund_requested", reason, timezone.now()
    saga.save(update_fields=["state", "reason", "updated_at"])
    _send(saga.order_id, "refund_requested", {"order_id": saga.order_id, "reason": reason})


def _send(order_id: int, step: str, payload: dict[str, Any]) -> None:
    """A request to the monolith: an ``updated`` event of the saga's aggregate (contract 5
    as it is), the ``step`` in its payload."""
    publish_event(REQUESTS, str(order_id), "updated", dict(payload, step=step))


def on_reply(event: OutboxEvent) -> None:
    """Apply the monolith's reply (inside the apply batch's transaction)."""
    try:
        order_id = int(event.payload["order_id"])
    except (KeyError, TypeError, ValueError):
        raise BadEvent(f"{REPLIES}: payload.order_id missing or not an integer") from None
    if event.payload.get("step") == "ship_requested":  # not the checkout's: no saga needed
        ship_requested(order_id, event.payload)
        return
    saga = CheckoutSaga.objects.select_for_update().filter(order_id=order_id).first()
    order = Order.objects.select_for_update().filter(pk=order_id).first()
    if saga is None or order is None:
        raise BadEvent(f"{REPLIES} for order {order_id}, which has no saga here")
    now, step = timezone.now(), event.payload.get("step")
    if step == "paid" and saga.state == "pay_requested":
        if order.status == Order.Status.CANCELLED:  # cancelled while being paid
            _compensate(saga, "cancelled while being paid")
            return
        order.status, order.updated_at = Order.Status.PAID, now
        order.save(update_fields=["status", "updated_at"])
        publish(order, "updated")
        saga.state = "paid"
    elif step == "payment_failed" and saga.state == "pay_requested":
        saga.state, saga.reason = "failed", str(event.payload.get("reason", ""))
    elif step == "refunded" and saga.state == "refund_requested":
        saga.state = "refunded"
    else:
        return  # a reply the saga no longer waits for (sent again): nothing to do
    saga.updated_at = now
    saga.save(update_fields=["state", "reason", "updated_at"])


def ship_requested(order_id: int, payload: Mapping[str, Any]) -> None:
    """Shipping (still the monolith's) shipped a paid order: make it shipped, at most once.

    The monolith wrote the shipment and this request in one transaction, after checking its
    copy of the order said ``paid``; the copy lags this service by the reverse relay. So:
    ``paid`` becomes ``shipped`` (published: the monolith's copy follows on the reverse
    stream); ``shipped`` already (a second request for the order) changes nothing; any other
    status (cancelled, or pending again, after the copy was read) is refused with
    ``ship_rejected`` back to the monolith, which marks the shipment on its tracking. An order
    this service does not have is a dead letter (``BadEvent``), listed like any other.
    """
    order = Order.objects.select_for_update().filter(pk=order_id).first()
    if order is None:
        raise BadEvent(f"{REPLIES} ship_requested for order {order_id}, which is not here")
    if order.status == Order.Status.PAID:
        order.status, order.updated_at = Order.Status.SHIPPED, timezone.now()
        order.save(update_fields=["status", "updated_at"])
        publish(order, "updated")
    elif order.status != Order.Status.SHIPPED:
        _send(order_id, "ship_rejected", {
            "order_id": order_id, "shipment_id": payload.get("shipment_id"),
            "request_id": payload.get("request_id", ""),
            "reason": f"Order {order.number} is {order.status}; only paid orders can be "
                      "shipped."})


def waiting(older_than: float = 0.0) -> list[dict[str, Any]]:
    """Sagas still waiting for a reply, oldest first (``older_than`` seconds at least)."""
    cutoff = timezone.now() - timedelta(seconds=older_than)
    rows = CheckoutSaga.objects.filter(state__in=CheckoutSaga.WAITING, updated_at__lte=cutoff)
    return [{"order_id": s.order_id, "state": s.state, "reason": s.reason,
             "started_at": s.started_at.isoformat(), "updated_at": s.updated_at.isoformat(),
             "waiting_seconds": round((timezone.now() - s.updated_at).total_seconds(), 1)}
            for s in rows.order_by("updated_at")]
