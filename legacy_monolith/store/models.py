"""Catalog, pricing AND inventory in one app: the legacy split (see docs/tangles.md)."""

from __future__ import annotations

from django.db import models

from legacy_monolith.common.models import Tag, TimeStampedModel
from legacy_monolith.outbox.managers import OutboxModel

# --- catalog ---------------------------------------------------------------------------


class Category(OutboxModel):
    name = models.CharField(max_length=100)
    slug = models.SlugField(max_length=100, unique=True)
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children"
    )

    class Meta:
        ordering = ["id"]
        verbose_name_plural = "categories"

    def __str__(self) -> str:
        return self.name


class Brand(OutboxModel):
    name = models.CharField(max_length=100)
    slug = models.SlugField(max_length=100, unique=True)
    country = models.CharField(max_length=2, blank=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.name


class Product(OutboxModel, TimeStampedModel):
    sku = models.CharField(max_length=32, unique=True)
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    category = models.ForeignKey(Category, on_delete=models.PROTECT, related_name="products")
    brand = models.ForeignKey(Brand, on_delete=models.PROTECT, related_name="products")
    price = models.DecimalField(max_digits=10, decimal_places=2)
    currency = models.CharField(max_length=3, default="EUR")
    is_active = models.BooleanField(default=True)
    tags = models.ManyToManyField(Tag, through="ProductTag", related_name="products", blank=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.sku


class ProductTag(OutboxModel):
    product = models.ForeignKey(Product, on_delete=models.CASCADE)
    tag = models.ForeignKey(Tag, on_delete=models.CASCADE)
    added_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        unique_together = [("product", "tag")]


class ProductImage(OutboxModel):
    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="images")
    url = models.URLField()
    position = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["position", "id"]


# --- pricing ---------------------------------------------------------------------------


class PriceHistory(OutboxModel):
    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="price_history")
    amount = models.DecimalField(max_digits=10, decimal_places=2)
    currency = models.CharField(max_length=3, default="EUR")
    valid_from = models.DateTimeField()

    class Meta:
        ordering = ["-valid_from", "-id"]
        verbose_name_plural = "price history"


# --- inventory -------------------------------------------------------------------------


class Warehouse(models.Model):
    code = models.CharField(max_length=16, unique=True)
    name = models.CharField(max_length=100)
    city = models.CharField(max_length=100)

    class Meta:
        ordering = ["id"]


class StockLevel(OutboxModel):
    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="stock_levels")
    warehouse = models.ForeignKey(
        Warehouse, on_delete=models.CASCADE, related_name="stock_levels"
    )
    quantity = models.IntegerField(default=0)

    class Meta:
        ordering = ["id"]
        unique_together = [("product", "warehouse")]


class StockReservation(models.Model):
    stock_level = models.ForeignKey(
        StockLevel, on_delete=models.CASCADE, related_name="reservations"
    )
    # Tangle: inventory points into ordering.
    order_line = models.ForeignKey(
        "orders.OrderLine", null=True, blank=True, on_delete=models.CASCADE,
        related_name="reservations",
    )
    quantity = models.PositiveIntegerField()
    released = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]


class StockMovement(models.Model):
    stock_level = models.ForeignKey(StockLevel, on_delete=models.CASCADE, related_name="movements")
    delta = models.IntegerField()
    reason = models.CharField(max_length=100)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
