"""The monolith's part in the checkout saga, once ordering runs as its own service.

In the monolith, paying an order is one database transaction across four contexts: the
payment intent (payments), the order's status (ordering), the stock reservations
(inventory, by the ``paid`` signal) and the notification. Once the ordering service owns
orders, that transaction is a saga (docs/extracted-ordering.md), and this module is its
monolith-side participant. The ordering service's process manager sends requests as events
of the aggregate ``ordering.CheckoutSaga`` (its outbox, delivered here by ``strangler relay``
to ``/internal/saga-events/``); each request is handled in one local transaction with the
reply it causes, written to this outbox as ``payments.CheckoutReply`` (delivered back to the
service by the monolith's relay). Contract 5 is kept as it is: a saga is an aggregate, each
step an ``updated`` event whose payload names the ``step``:

* ``pay_requested`` (the order and its lines, the method): keep a copy of the order (payments
  and shipping still read ``orders_order``), then the monolith's own ``pay``: charge and
  reserve every line, all or nothing. Reply ``paid`` or ``payment_failed`` (with why).
* ``refund_requested`` (compensation: the order was cancelled after, or while, it was being
  paid): the monolith's own ``cancel``: refund the charge, release the reservations. Reply
  ``refunded``.

After the cutover shipping asks the owner too, on the same two channels (kept, so every
follower of the monolith's outbox knows them already: the catalog ignores the replies):

* ``request_ship`` (from ``orders.actions.ship``, in the shipment's transaction): a
  ``payments.CheckoutReply`` event whose step is ``ship_requested`` (the order, the shipment,
  the request id). The service makes a paid order shipped, and that row comes back here.
* ``ship_rejected`` (the service's answer when its order is no longer paid, e.g. cancelled
  meanwhile): the shipment gets a ``ship_rejected`` tracking event with the reason, so staff
  see it on the shipment's tracking (the parcel must not go out), and ``ship`` no longer
  counts that shipment as the order's one.

At most once per event id (``ConsumedEvent``), so a redelivered request neither charges nor
reserves twice; a request for an order already in the wanted state replies again without
acting (the process manager ignores a reply it no longer waits for).

The same stream carries the service's ordering rows (carts, items, orders, lines, coupons):
they are written into the monolith's own tables (``consumer.apply_row``), so after a cutover
of ordering the monolith keeps a faithful copy and an undo loses nothing (the reverse
stream). The participant's working copy is the same ``orders_order`` row, and the service
publishes an order's ``cancelled`` row *before* the ``refund_requested`` that follows it (one
transaction, in that order). So the money decides, not the row: while the monolith holds a
succeeded charge of an order, the order's status is the participant's (a row from the
service does not change it), and ``refund_requested`` refunds whatever charge is held,
whatever the row says, then keeps the service's ``updated_at``. Otherwise a ``cancelled``
row arriving first made the participant answer "refunded 0.00" and keep the money and the
reservations.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.db import models, transaction
from rest_framework.exceptions import APIException

from legacy_monolith.outbox.consumer import apply_row, consume_batch
from legacy_monolith.outbox.models import OutboxEvent
from legacy_monolith.outbox.publish import ORDERING, next_sequence, silenced
from strangler.shadow_changes import current_request_id

REQUESTS = "ordering.CheckoutSaga"
REPLIES = "payments.CheckoutReply"
SHIP_REJECTED = "ship_rejected"


def apply_saga_events(stream: str, events: list[dict[str, Any]], position: int
                      ) -> dict[str, int]:
    """Handle a batch of the ordering service's events in one transaction (relay protocol).

    Saga requests go to the participant, the service's ordering rows into the monolith's
    tables; other events are acknowledged as stale. After the ordering cutover the
    ``orders_*`` tables are fenced: only this consumer writes them.
    """
    with silenced(ORDERING):  # the service's rows: it publishes them, not us
        return consume_batch(stream, events, position, "ordering", _handle)


def _handle(event: dict[str, Any]) -> str:
    if event["aggregate_type"] in ORDERING:
        return apply_row(event, _keep_charged_status)
    if event["aggregate_type"] != REQUESTS:
        return "stale"
    payload = event["payload"]
    step = payload.get("step") if isinstance(payload, dict) else None
    if step == "pay_requested":
        _reply(payload["order"]["id"], *_pay(payload))
    elif step == "refund_requested":
        _reply(payload["order_id"], *_refund(int(payload["order_id"])))
    elif step == SHIP_REJECTED:
        _ship_rejected(payload)
    else:
        return "stale"
    return "applied"


def _pay(payload: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    from legacy_monolith.orders import actions
    from legacy_monolith.orders.models import Order, PaymentIntent

    order = _copy_order(payload["order"], payload["lines"])
    if order.status != Order.Status.PENDING:
        intent = order.payments.filter(status=PaymentIntent.Status.SUCCEEDED).first()
        if intent is not None:  # paid already (a request sent again): the same answer
            return "paid", {"payment": intent.pk, "amount": str(intent.amount)}
        return "payment_failed", {"reason": f"Order {order.number} is {order.status}."}
    try:
        with transaction.atomic():  # a savepoint: a refusal leaves no charge, no reservation
            intent = actions.pay(order, str(payload.get("method", "card")))
    except APIException as exc:  # OutOfStock, Conflict: what the monolith answers 409 for
        return "payment_failed", {"reason": str(exc.detail)}
    return "paid", {"payment": intent.pk, "amount": str(intent.amount)}


def _refund(order_id: int) -> tuple[str, dict[str, Any]]:
    from legacy_monolith.orders import actions
    from legacy_monolith.orders.models import Order

    order = Order.objects.filter(pk=order_id).select_related("user").first()
    if order is None or not _charged(order_id):
        return "refunded", {"refunded": "0.00"}  # never charged here, or refunded already
    stamp = order.updated_at  # the service's, from its row: the copy stays equal to it
    with transaction.atomic():
        actions.cancel(order, order.user)  # refund + release the reservations (signal)
    Order.objects.filter(pk=order_id).update(updated_at=stamp)
    refunded = sum(r.amount for p in order.payments.all() for r in p.refunds.all())
    return "refunded", {"refunded": str(refunded)}


def request_ship(order_id: int, shipment_id: int) -> None:
    """Ask the ordering service to make the order shipped (in the shipment's transaction)."""
    request_id = current_request_id()
    _reply(order_id, "ship_requested", {"shipment_id": shipment_id, "request_id": request_id},
           request_id)


def _ship_rejected(payload: dict[str, Any]) -> None:
    """Mark the shipment the owner refused (at most once: the event id is consumed once)."""
    from django.utils import timezone

    from legacy_monolith.orders.models import Shipment, TrackingEvent

    shipment = Shipment.objects.filter(pk=int(payload["shipment_id"])).first()
    if shipment is not None:
        TrackingEvent.objects.create(shipment=shipment, status=SHIP_REJECTED,
                                     location=str(payload.get("reason", ""))[:100],
                                     happened_at=timezone.now())


def _charged(order_id: int) -> bool:
    """True while the monolith holds a succeeded charge of the order (payments' own rows)."""
    from legacy_monolith.orders.models import PaymentIntent

    return PaymentIntent.objects.filter(order_id=order_id,
                                        status=PaymentIntent.Status.SUCCEEDED).exists()


def _keep_charged_status(model: type[models.Model], key: str, values: dict[str, Any]
                         ) -> dict[str, Any]:
    """An order row from the service does not change the status of an order whose charge
    the monolith holds: only ``refund_requested`` does, with the refund (module doc). The
    one exception is ``shipped``: the owner's answer to ``ship_requested``, charge kept."""
    if (model._meta.label == "orders.Order" and "status" in values
            and values["status"] != "shipped" and _charged(int(key))):
        values = {k: v for k, v in values.items() if k != "status"}
    return values


def _copy_order(data: dict[str, Any], lines: list[dict[str, Any]]) -> Any:
    """The monolith's copy of the service's order and lines, created once (without the
    ``paid`` signal: bulk inserts send none), then left to ``pay`` and ``cancel``. The
    service's rows usually made it already (they precede the request on the stream); what
    is missing is made from the request."""
    from legacy_monolith.orders.models import Order, OrderLine

    if not Order.objects.filter(pk=data["id"]).exists():
        Order.objects.bulk_create([Order(
            pk=data["id"], number=data["number"], user_id=data["user_id"], status="pending",
            shipping_address_id=data.get("shipping_address_id"), total=data["total"],
            currency=data.get("currency", "EUR"))])
    present = set(OrderLine.objects.filter(pk__in=[line["id"] for line in lines])
                  .values_list("pk", flat=True))
    OrderLine.objects.bulk_create(OrderLine(
        pk=line["id"], order_id=data["id"], product_id=line["product_id"],
        product_name=line["product_name"], unit_price=line["unit_price"],
        quantity=line["quantity"]) for line in lines if line["id"] not in present)
    return Order.objects.get(pk=data["id"])


def _reply(order_id: Any, kind: str, payload: dict[str, Any], request_id: str = "") -> None:
    key = str(order_id)
    OutboxEvent.objects.create(event_id=str(uuid.uuid4()), aggregate_type=REPLIES,
                               aggregate_id=key, sequence=next_sequence(REPLIES, key),
                               event_type="updated",
                               payload=dict(payload, step=kind, order_id=int(key)),
                               request_id=request_id)
