"""Catalog models of the service, and the bookkeeping that keeps them in step.

The catalog tables mirror the monolith's catalog context field for field (same primary keys,
same attribute names such as ``category_id``), because while the monolith owns the data the
service applies its change events row by row. Two deliberate differences, both because the
rows arrive from another database in event order rather than in one transaction:

* foreign keys carry no database constraint (``db_constraint=False``) and ``slug``/``sku``
  uniqueness is checked by the API, not the database: a backfill copies rows batch by batch,
  so a child can briefly arrive before its parent, or a renamed slug after its new owner.
  ``strangler reconcile`` proves the end state equal; the API keeps the monolith's rules.
* ``created_at``/``updated_at`` are plain fields set by the actions, not ``auto_now``, so an
  applied event keeps the monolith's timestamps.

``ProductSignals`` is the read model of what the catalog shows but does not own: ``in_stock``
(inventory) and ``rating`` (reviews), fed by those contexts' events.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from extracted.servicekit import models as kit

SYNCED = {"on_delete": models.DO_NOTHING, "db_constraint": False}


class Tag(models.Model):
    """A tag from the shared kernel (``common.Tag`` in the monolith)."""

    name = models.CharField(max_length=60)
    slug = models.SlugField(max_length=60, db_index=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug


class Category(models.Model):
    """A product category; categories form a tree through ``parent``."""

    name = models.CharField(max_length=100)
    slug = models.SlugField(max_length=100, db_index=True)
    parent = models.ForeignKey(  # SYNCED spelled out: the plugin must see null=True
        "self", null=True, blank=True, related_name="children", on_delete=models.DO_NOTHING,
        db_constraint=False,
    )

    class Meta:
        ordering = ["id"]
        verbose_name_plural = "categories"

    def __str__(self) -> str:
        return self.name


class Brand(models.Model):
    """A brand (or author, for books)."""

    name = models.CharField(max_length=100)
    slug = models.SlugField(max_length=100, db_index=True)
    country = models.CharField(max_length=2, blank=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.name


class Product(models.Model):
    """A sellable product."""

    sku = models.CharField(max_length=32, db_index=True)
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=200, db_index=True)
    description = models.TextField(blank=True)
    category = models.ForeignKey(Category, related_name="products", **SYNCED)  # type: ignore[arg-type]
    brand = models.ForeignKey(Brand, related_name="products", **SYNCED)  # type: ignore[arg-type]
    price = models.DecimalField(max_digits=10, decimal_places=2)
    currency = models.CharField(max_length=3, default="EUR")
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(default=timezone.now)
    tags = models.ManyToManyField(Tag, through="ProductTag", related_name="products", blank=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.sku


class ProductImage(models.Model):
    """An image of a product, shown in ``position`` order."""

    product = models.ForeignKey(Product, related_name="images", **SYNCED)  # type: ignore[arg-type]
    url = models.URLField()
    position = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["position", "id"]


class PriceHistory(models.Model):
    """A past or current price of a product."""

    product = models.ForeignKey(Product, related_name="price_history", **SYNCED)  # type: ignore[arg-type]
    amount = models.DecimalField(max_digits=10, decimal_places=2)
    currency = models.CharField(max_length=3, default="EUR")
    valid_from = models.DateTimeField()

    class Meta:
        ordering = ["-valid_from", "-id"]
        verbose_name_plural = "price history"


class ProductTag(models.Model):
    """The product-tag link, with when it was added."""

    product = models.ForeignKey(Product, related_name="product_tags", **SYNCED)  # type: ignore[arg-type]
    tag = models.ForeignKey(Tag, related_name="product_tags", **SYNCED)  # type: ignore[arg-type]
    added_at = models.DateTimeField(default=timezone.now)


class ProductSignals(models.Model):
    """What other contexts say about a product: stock (inventory) and rating (reviews).

    A read model, fed by events; a product without a row shows ``in_stock: false`` and
    ``rating: null``, as a product without stock levels or reviews does in the monolith.
    """

    product_id = models.BigIntegerField(primary_key=True)
    in_stock = models.BooleanField(default=False)
    rating = models.FloatField(null=True, blank=True)


# --- keeping in step: the shared bookkeeping of extracted/servicekit/models.py (AggregateVersion,
# ProcessedEvent, StreamPosition, OutboxEvent, DeadLetter, SyncAudit, ContextOwnership), declared
# here as this app's models.

kit.declare_bookkeeping(globals())
