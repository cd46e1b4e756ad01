"""Writes made through the catalog's API, each with its outbox events in one transaction.

The events are written by ``extracted.servicekit.outbox.publish`` (shared by every service).
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from extracted.catalog.models import (
    Brand,
    Category,
    PriceHistory,
    Product,
    ProductImage,
    ProductTag,
    Tag,
)
from extracted.servicekit.outbox import publish


class CatalogConflict(Exception):
    """The change would break a rule the monolith enforces (answered as 409)."""


@transaction.atomic
def create_product(data: dict[str, Any]) -> Product:
    """Create a product and its tag links; publish each row."""
    tags: list[Tag] = data.pop("tags", [])
    now = timezone.now()
    product = Product.objects.create(created_at=now, updated_at=now, **data)
    publish(product, "created")
    _set_tags(product, tags)
    return product


@transaction.atomic
def update_product(product: Product, data: dict[str, Any]) -> Product:
    """Update a product (and its tags when given); publish what changed."""
    tags: list[Tag] | None = data.pop("tags", None)
    for name, value in data.items():
        setattr(product, name, value)
    product.updated_at = timezone.now()
    product.save()
    publish(product, "updated")
    if tags is not None:
        _set_tags(product, tags)
    return product


def _set_tags(product: Product, tags: list[Tag]) -> None:
    wanted = {t.pk for t in tags}
    links = list(ProductTag.objects.filter(product=product))
    for link in links:
        if link.tag_id not in wanted:
            publish(link, "deleted")
            link.delete()
    have = {link.tag_id for link in links}
    for tag_id in sorted(wanted - have):
        publish(ProductTag.objects.create(product=product, tag_id=tag_id), "created")


@transaction.atomic
def delete_product(product: Product) -> None:
    """Delete a product with its images, prices and tag links (the monolith's CASCADE)."""
    for child_model in (ProductImage, PriceHistory, ProductTag):
        for child in child_model.objects.filter(product=product):
            publish(child, "deleted")
            child.delete()
    publish(product, "deleted")
    product.delete()


@transaction.atomic
def save_simple(instance: Category | Brand, created: bool) -> None:
    """Publish a category or brand the serializer just saved."""
    publish(instance, "created" if created else "updated")


@transaction.atomic
def delete_category(category: Category) -> None:
    """Delete a category: refused while it has products; children lose their parent."""
    if Product.objects.filter(category=category).exists():
        raise CatalogConflict(f"Category {category.slug} still has products.")
    for child in Category.objects.filter(parent=category):
        child.parent = None
        child.save(update_fields=["parent"])
        publish(child, "updated")
    publish(category, "deleted")
    category.delete()


@transaction.atomic
def delete_brand(brand: Brand) -> None:
    """Delete a brand: refused while it has products."""
    if Product.objects.filter(brand=brand).exists():
        raise CatalogConflict(f"Brand {brand.slug} still has products.")
    publish(brand, "deleted")
    brand.delete()
