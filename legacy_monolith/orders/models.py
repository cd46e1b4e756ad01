"""Ordering, AND payments AND shipping: the legacy `orders` app holds all three.

Ordering's rows (carts, cart items, orders, order lines, coupons) publish every change to
the outbox (``OutboxModel``): the ordering service follows them while the monolith owns
them, and its cutover drains them.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from legacy_monolith.common.models import TimeStampedModel
from legacy_monolith.outbox.managers import OutboxModel

# --- ordering --------------------------------------------------------------------------


class Cart(OutboxModel, TimeStampedModel):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE,
        related_name="carts",
    )
    session_key = models.CharField(max_length=40, blank=True)

    class Meta:
        ordering = ["id"]


class CartItem(OutboxModel):
    cart = models.ForeignKey(Cart, on_delete=models.CASCADE, related_name="items")
    product = models.ForeignKey("store.Product", on_delete=models.CASCADE, related_name="+")
    quantity = models.PositiveIntegerField(default=1)

    class Meta:
        ordering = ["id"]
        unique_together = [("cart", "product")]


class Order(OutboxModel, TimeStampedModel):
    class Status(models.TextChoices):
        PENDING = "pending"
        PAID = "paid"
        SHIPPED = "shipped"
        CANCELLED = "cancelled"

    number = models.CharField(max_length=20, unique=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="orders"
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    shipping_address = models.ForeignKey(
        "accounts.Address", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    total = models.DecimalField(max_digits=12, decimal_places=2, default=0)
    currency = models.CharField(max_length=3, default="EUR")
    coupon = models.ForeignKey(
        "Coupon", null=True, blank=True, on_delete=models.SET_NULL, related_name="orders"
    )

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return self.number


class OrderLine(OutboxModel):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="lines")
    product = models.ForeignKey("store.Product", on_delete=models.PROTECT, related_name="+")
    product_name = models.CharField(max_length=200)
    unit_price = models.DecimalField(max_digits=10, decimal_places=2)
    quantity = models.PositiveIntegerField()

    class Meta:
        ordering = ["id"]


class Coupon(OutboxModel):
    code = models.CharField(max_length=30, unique=True)
    percent_off = models.PositiveSmallIntegerField()
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["id"]


# --- payments --------------------------------------------------------------------------


class PaymentIntent(TimeStampedModel):
    class Status(models.TextChoices):
        REQUIRES_PAYMENT = "requires_payment"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        REFUNDED = "refunded"

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="payments")
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    status = models.CharField(
        max_length=20, choices=Status.choices, default=Status.REQUIRES_PAYMENT
    )
    provider_ref = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["-id"]


class Refund(models.Model):
    payment_intent = models.ForeignKey(
        PaymentIntent, on_delete=models.CASCADE, related_name="refunds"
    )
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    reason = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]


# --- shipping --------------------------------------------------------------------------


class Carrier(models.Model):
    code = models.CharField(max_length=16, unique=True)
    name = models.CharField(max_length=100)

    class Meta:
        ordering = ["id"]


class Shipment(TimeStampedModel):
    class Status(models.TextChoices):
        CREATED = "created"
        IN_TRANSIT = "in_transit"
        DELIVERED = "delivered"

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="shipments")
    carrier = models.ForeignKey(Carrier, on_delete=models.PROTECT, related_name="shipments")
    tracking_number = models.CharField(max_length=40)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.CREATED)

    class Meta:
        ordering = ["-id"]


class ShipmentLine(models.Model):
    shipment = models.ForeignKey(Shipment, on_delete=models.CASCADE, related_name="lines")
    order_line = models.ForeignKey(OrderLine, on_delete=models.CASCADE, related_name="+")
    quantity = models.PositiveIntegerField()


class TrackingEvent(models.Model):
    shipment = models.ForeignKey(Shipment, on_delete=models.CASCADE, related_name="events")
    status = models.CharField(max_length=40)
    location = models.CharField(max_length=100, blank=True)
    happened_at = models.DateTimeField()

    class Meta:
        ordering = ["happened_at", "id"]
