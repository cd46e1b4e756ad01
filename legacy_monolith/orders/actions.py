"""Ordering side effects: checkout, pay, cancel, ship. Views call these; signals do the rest."""

from __future__ import annotations

import hashlib
import uuid
from decimal import Decimal
from typing import Any

from django.db import DatabaseError, transaction
from django.utils import timezone
from rest_framework import serializers

from legacy_monolith.accounts.models import Address
from legacy_monolith.common.errors import Conflict
from legacy_monolith.orders.models import (
    Carrier,
    Cart,
    Coupon,
    Order,
    OrderLine,
    PaymentIntent,
    Refund,
    Shipment,
    ShipmentLine,
    TrackingEvent,
)
from legacy_monolith.outbox import publish as outbox
from legacy_monolith.store.actions import available_quantity
from legacy_monolith.utils import apply_percent_off, audit, money, order_number, tracking_number


def cart_for(user: Any) -> Cart:
    """The user's open cart (the oldest one, created when missing)."""
    cart = Cart.objects.filter(user=user).order_by("id").first()
    return cart or Cart.objects.create(user=user)


def _coupon(code: str) -> Coupon | None:
    if not code:
        return None
    coupon: Coupon | None = Coupon.objects.filter(code=code, active=True).first()
    if coupon is None:
        raise serializers.ValidationError({"coupon": [f"Unknown or inactive coupon {code!r}."]})
    return coupon


@transaction.atomic
def checkout(user: Any, address_id: int, coupon_code: str = "") -> Order:
    """Turn the user's cart into a pending order; the cart is emptied."""
    cart = cart_for(user)
    items = list(cart.items.select_related("product"))
    if not items:
        raise serializers.ValidationError({"cart": ["The cart is empty."]})
    address = Address.objects.alive().filter(pk=address_id, user=user).first()
    if address is None:
        raise serializers.ValidationError(
            {"shipping_address": [f"Address {address_id} is not one of yours."]}
        )
    short = [i.product.sku for i in items if available_quantity(i.product_id) < i.quantity]
    if short:
        raise serializers.ValidationError({"items": [f"Out of stock: {', '.join(short)}."]})
    coupon = _coupon(coupon_code)
    subtotal = sum((i.product.price * i.quantity for i in items), Decimal(0))
    total = apply_percent_off(subtotal, coupon.percent_off) if coupon else money(subtotal)
    with outbox.silenced({"orders.Order"}):  # published once, with its number
        order = Order.objects.create(
            number=f"TMP-{uuid.uuid4().hex[:16]}", user=user,
            shipping_address=address, total=total, coupon=coupon,
        )
        order.number = order_number(order.pk)
        order.save(update_fields=["number"])
    outbox.record(order, "created")
    OrderLine.objects.bulk_create(
        OrderLine(order=order, product=i.product, product_name=i.product.name,
                  unit_price=i.product.price, quantity=i.quantity)
        for i in items
    )
    cart.items.all().delete()
    audit(user, "order.checkout", order)
    return order


@transaction.atomic
def pay(order: Order, method: str) -> PaymentIntent:
    """Capture the order's total; the paid signal reserves stock and notifies the user."""
    order = Order.objects.select_for_update().get(pk=order.pk)
    if order.status != Order.Status.PENDING:
        raise Conflict(f"Order {order.number} is {order.status}; only pending orders can be paid.")
    ref = hashlib.sha1(f"{order.number}:{method}".encode()).hexdigest()[:16]
    intent = PaymentIntent.objects.create(
        order=order, amount=order.total, status=PaymentIntent.Status.SUCCEEDED,
        provider_ref=f"{method}_{ref}",
    )
    order.status = Order.Status.PAID
    order.save(update_fields=["status", "updated_at"])
    return intent


@transaction.atomic
def cancel(order: Order, user: Any) -> Order:
    """Cancel a pending or paid order; a paid one is refunded (stock released by signal)."""
    order = Order.objects.select_for_update().get(pk=order.pk)
    if order.status not in (Order.Status.PENDING, Order.Status.PAID):
        raise Conflict(f"Order {order.number} is {order.status}; it can no longer be cancelled.")
    for intent in order.payments.filter(status=PaymentIntent.Status.SUCCEEDED):
        Refund.objects.create(payment_intent=intent, amount=intent.amount, reason="cancelled")
        intent.status = PaymentIntent.Status.REFUNDED
        intent.save(update_fields=["status", "updated_at"])
    order.status = Order.Status.CANCELLED
    order.save(update_fields=["status", "updated_at"])
    audit(user, "order.cancel", order)
    return order


@transaction.atomic
def ship(order: Order, carrier: Carrier, user: Any) -> Shipment:
    """Ship every line of a paid order with one carrier.

    After the ordering cutover the fence refuses the status write (``_mark_shipped``): the
    service owns the order's status. The shipment's rows (shipping's own tables) are written
    here as before, and the status is asked of the owner by a ``ship_requested`` event in the
    same transaction (``participants.request_ship``); the service makes the order shipped and
    its row comes back on the reverse stream. The ``paid`` check reads the monolith's copy,
    as current as the reverse relay.
    """
    from legacy_monolith.outbox import participants  # here: walkthrough-2 quotes the lines above

    order = Order.objects.select_for_update().get(pk=order.pk)
    if order.status != Order.Status.PAID:
        raise Conflict(f"Order {order.number} is {order.status}; only paid orders can be shipped.")
    moved = not _mark_shipped(order)
    if moved and order.shipments.exclude(events__status=participants.SHIP_REJECTED).exists():
        # the copy still says paid until the owner's shipped row comes back: one shipment
        raise Conflict(f"Order {order.number} is being shipped already.")
    shipment = Shipment.objects.create(
        order=order, carrier=carrier, tracking_number=tracking_number(order.number, carrier.code)
    )
    ShipmentLine.objects.bulk_create(
        ShipmentLine(shipment=shipment, order_line=line, quantity=line.quantity)
        for line in order.lines.all()
    )
    TrackingEvent.objects.create(
        shipment=shipment, status="label_created", location="warehouse",
        happened_at=timezone.now(),
    )
    if moved:
        participants.request_ship(order.pk, shipment.pk)
    audit(user, "order.ship", order)
    return shipment


def _mark_shipped(order: Order) -> bool:
    """Write ``shipped``; False when the fence refuses it (``strangler cutover ordering``
    moved the order's status to the service). In a savepoint: the refusal (PostgreSQL's
    trigger) must not end the transaction. Asking the fence, rather than reading
    ``strangler_fence`` first, keeps shipping's footprint before the cutover as it was."""
    try:
        with transaction.atomic():
            order.status = Order.Status.SHIPPED
            order.save(update_fields=["status", "updated_at"])
    except DatabaseError as exc:
        if "is fenced" not in str(exc):
            raise
        order.status = Order.Status.PAID
        return False
    return True
