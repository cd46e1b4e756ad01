"""Ordering's writes, each with its outbox events in the same transaction.

Checkout differs from the monolith's in one way that matters: stock and addresses belong to
other contexts. The address is checked with the customers context's API (the caller's own
token, so "not one of yours" is decided by its owner); the stock check reads the
availability fact inventory publishes, which may lag by the relay's delay. Reserving the
stock and taking the payment are the saga's later steps (docs/extracted-ordering.md).
"""

from __future__ import annotations

import uuid
from decimal import Decimal

import httpx
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from rest_framework import exceptions, serializers

from extracted.ordering import saga
from extracted.ordering.errors import Conflict
from extracted.ordering.models import (
    Cart,
    CartItem,
    Coupon,
    Order,
    OrderLine,
    Product,
    ProductAvailability,
)
from extracted.ordering.serializers import money
from extracted.servicekit.auth import CallerIdentity
from extracted.servicekit.outbox import publish


def order_number(order_id: int) -> str:
    """The customer-facing number of an order, stable for an id.

    >>> order_number(42)
    'ORD-00000042'
    """
    return f"ORD-{order_id:08d}"


def user_id(user: CallerIdentity) -> int:
    """The caller's user id; a service-local staff token has none (it is nobody's cart)."""
    if user.id is None:
        raise exceptions.PermissionDenied("This token names no user: carts and orders "
                                          "belong to users (use a user's token).")
    return user.id


def cart_for(user: CallerIdentity) -> Cart:
    """The user's open cart (the oldest one, created and published when missing)."""
    cart = Cart.objects.filter(user_id=user_id(user)).order_by("id").first()
    if cart is None:
        with transaction.atomic():
            now = timezone.now()
            cart = Cart.objects.create(user_id=user_id(user), created_at=now, updated_at=now)
            publish(cart, "created")
    return cart


@transaction.atomic
def add_item(user: CallerIdentity, product: Product, quantity: int) -> None:
    """Add a product to the cart; adding it again adds to the quantity (at most 99)."""
    cart = cart_for(user)
    item = CartItem.objects.filter(cart=cart, product=product).first()
    if item is None:
        publish(CartItem.objects.create(cart=cart, product=product, quantity=quantity),
                "created")
        return
    item.quantity = min(item.quantity + quantity, 99)
    item.save(update_fields=["quantity"])
    publish(item, "updated")


@transaction.atomic
def set_quantity(item: CartItem, quantity: int) -> None:
    """Change the quantity of a cart line."""
    item.quantity = quantity
    item.save(update_fields=["quantity"])
    publish(item, "updated")


@transaction.atomic
def remove_items(items: list[CartItem]) -> None:
    """Remove cart lines (publishing each deletion)."""
    for item in items:
        publish(item, "deleted")
        item.delete()


def _check_address(token: str, address_id: int) -> None:
    """The customers context says whether the address is the caller's (its API, not its
    tables); without ORDERING_AUTH_URL every address is taken on trust (tests, demos)."""
    if not settings.SERVICE_AUTH_URL:
        return
    url = f"{settings.SERVICE_AUTH_URL.rstrip('/')}/api/addresses/{address_id}/"
    try:
        answer = httpx.get(url, headers={"Authorization": f"Token {token}"}, timeout=3.0)
    except httpx.HTTPError as exc:
        raise exceptions.APIException(f"Cannot check the address: {exc}") from None
    if answer.status_code != 200:
        raise serializers.ValidationError(
            {"shipping_address": [f"Address {address_id} is not one of yours."]})


def _coupon(code: str) -> Coupon | None:
    if not code:
        return None
    coupon = Coupon.objects.filter(code=code, active=True).first()
    if coupon is None:
        raise serializers.ValidationError({"coupon": [f"Unknown or inactive coupon {code!r}."]})
    return coupon


def _available(product_ids: list[int]) -> dict[int, int]:
    rows = ProductAvailability.objects.filter(product_id__in=product_ids)
    return {row.product_id: row.available for row in rows}


@transaction.atomic
def checkout(user: CallerIdentity, token: str, address_id: int, coupon_code: str = "") -> Order:
    """Turn the user's cart into a pending order; the cart is emptied. Same checks, same
    order and same messages as the monolith's."""
    cart = cart_for(user)
    items = list(cart.items.select_related("product"))
    if not items:
        raise serializers.ValidationError({"cart": ["The cart is empty."]})
    _check_address(token, address_id)
    available = _available([i.product_id for i in items])
    short = [i.product.sku for i in items if available.get(i.product_id, 0) < i.quantity]
    if short:
        raise serializers.ValidationError({"items": [f"Out of stock: {', '.join(short)}."]})
    coupon = _coupon(coupon_code)
    subtotal = sum((i.product.price * i.quantity for i in items), Decimal(0))
    total = money(subtotal * (100 - coupon.percent_off) / 100) if coupon else money(subtotal)
    now = timezone.now()
    order = Order.objects.create(number=f"TMP-{uuid.uuid4().hex[:16]}", user_id=user_id(user),
                                 shipping_address_id=address_id, total=total, coupon=coupon,
                                 created_at=now, updated_at=now)
    order.number = order_number(order.pk)
    order.save(update_fields=["number"])
    publish(order, "created")
    for item in items:
        line = OrderLine.objects.create(order=order, product=item.product,
                                        product_name=item.product.name,
                                        unit_price=item.product.price, quantity=item.quantity)
        publish(line, "created")
    remove_items(items)
    return order


@transaction.atomic
def cancel(order: Order) -> Order:
    """Cancel a pending or paid order (a paid one is refunded by the saga's compensation)."""
    order = Order.objects.select_for_update().get(pk=order.pk)
    if order.status not in (Order.Status.PENDING, Order.Status.PAID):
        raise Conflict(f"Order {order.number} is {order.status}; it can no longer be cancelled.")
    was_paid = order.status == Order.Status.PAID
    order.status = Order.Status.CANCELLED
    order.updated_at = timezone.now()
    order.save(update_fields=["status", "updated_at"])
    publish(order, "updated")
    saga.on_cancel(order, was_paid)  # a paid order is refunded by the saga's compensation
    return order


def save_coupon(coupon: Coupon, created: bool) -> None:
    """Publish a coupon the serializer just saved."""
    publish(coupon, "created" if created else "updated")


@transaction.atomic
def delete_coupon(coupon: Coupon) -> None:
    """Delete a coupon (orders keep their discount; the link is dropped as in SET_NULL)."""
    for order in Order.objects.filter(coupon=coupon):
        order.coupon = None
        order.save(update_fields=["coupon"])
        publish(order, "updated")
    publish(coupon, "deleted")
    coupon.delete()
