"""Ordering models of the service, and the bookkeeping that keeps them in step.

Carts, orders, lines and coupons mirror the monolith's ordering context field for field
(same primary keys and attribute names), for the same reasons as the catalog's
(docs/extracted-catalog.md): rows arrive from another database in event order, so foreign
keys carry no database constraint and uniqueness (order numbers, one cart line per
product) is kept by the API; timestamps are plain fields the actions set.

Users and addresses belong to the customers context: an order keeps their ids only.
``Product`` is a read-only reference copy of the catalog's rows (what an order line shows),
``ProductAvailability`` inventory's units on hand: both fed by events, never written here.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from extracted.servicekit import models as kit


class Product(models.Model):
    """The catalog's product, as far as ordering needs it (a reference, read-only)."""

    sku = models.CharField(max_length=32)
    name = models.CharField(max_length=200)
    price = models.DecimalField(max_digits=10, decimal_places=2)
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["id"]


class ProductAvailability(models.Model):
    """Units of a product on hand (inventory's fact); no row means none."""

    product_id = models.BigIntegerField(primary_key=True)
    available = models.IntegerField(default=0)


class Coupon(models.Model):
    """A percentage discount code."""

    code = models.CharField(max_length=30, db_index=True)
    percent_off = models.PositiveSmallIntegerField()
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["id"]


class Cart(models.Model):
    """A user's cart (the oldest one is the open one)."""

    user_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    session_key = models.CharField(max_length=40, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]


class CartItem(models.Model):
    """A product in a cart, with its quantity (one line per product, kept by the API)."""

    cart = models.ForeignKey(Cart, related_name="items", on_delete=models.DO_NOTHING,
                             db_constraint=False)
    product = models.ForeignKey(Product, related_name="+", on_delete=models.DO_NOTHING,
                                db_constraint=False)
    quantity = models.PositiveIntegerField(default=1)

    class Meta:
        ordering = ["id"]


class Order(models.Model):
    """An order: pending, paid, shipped or cancelled."""

    class Status(models.TextChoices):
        PENDING = "pending"
        PAID = "paid"
        SHIPPED = "shipped"
        CANCELLED = "cancelled"

    number = models.CharField(max_length=20, db_index=True)
    user_id = models.BigIntegerField(db_index=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    shipping_address_id = models.BigIntegerField(null=True, blank=True)
    total = models.DecimalField(max_digits=12, decimal_places=2, default=0)
    currency = models.CharField(max_length=3, default="EUR")
    coupon = models.ForeignKey(
        Coupon, null=True, blank=True, related_name="orders", on_delete=models.DO_NOTHING,
        db_constraint=False,
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return self.number


class OrderLine(models.Model):
    """One product of an order, with the name and price it was sold at."""

    order = models.ForeignKey(Order, related_name="lines", on_delete=models.DO_NOTHING,
                              db_constraint=False)
    product = models.ForeignKey(Product, related_name="+", on_delete=models.DO_NOTHING,
                                db_constraint=False)
    product_name = models.CharField(max_length=200)
    unit_price = models.DecimalField(max_digits=10, decimal_places=2)
    quantity = models.PositiveIntegerField()

    class Meta:
        ordering = ["id"]


class CheckoutSaga(models.Model):
    """The process manager's state of one order's payment (docs/extracted-ordering.md).

    ``state``: ``pay_requested`` (waiting for the monolith's payments and inventory),
    ``paid``, ``failed`` (refused: out of stock; the order stays pending, as in the
    monolith), ``refund_requested`` (compensating: cancelled after or while being paid),
    ``refunded``. The waiting states are the ones ``strangler ordering sagas`` lists.
    """

    WAITING = ("pay_requested", "refund_requested")

    order_id = models.BigIntegerField(unique=True)
    state = models.CharField(max_length=20)
    method = models.CharField(max_length=16, default="card")
    reason = models.TextField(blank=True)
    started_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]


# --- keeping in step: the shared bookkeeping of extracted/servicekit/models.py (AggregateVersion,
# ProcessedEvent, StreamPosition, OutboxEvent, DeadLetter, SyncAudit, ContextOwnership), declared
# here as this app's models.

kit.declare_bookkeeping(globals())
