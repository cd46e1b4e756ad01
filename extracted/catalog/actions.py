"""Writes made through the service's API, each with its outbox events in one transaction.

After cutover the service owns the catalog, and these events are how the rest of the world
(the monolith's read-only copy for ordering) hears about changes. Every changed row gets an
event with the next sequence of its aggregate; the sequence continues the one the service
followed while the monolith owned the data (``AggregateVersion``), so a consumer sees one
unbroken history across the cutover.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.db import connection, models, transaction
from django.utils import timezone

from extracted.catalog.models import (
    AggregateVersion,
    Brand,
    Category,
    OutboxEvent,
    PriceHistory,
    Product,
    ProductImage,
    ProductTag,
    Tag,
)
from extracted.sync import CATALOG_TABLES, TableSpec, normalize_row
from strangler.shadow_changes import current_request_id

SPEC_BY_MODEL: dict[str, TableSpec] = {s.model: s for s in CATALOG_TABLES}


class CatalogConflict(Exception):
    """The change would break a rule the monolith enforces (answered as 409)."""


def publish(instance: models.Model, event_type: str) -> OutboxEvent:
    """Write the outbox event for one changed row (call inside the change's transaction)."""
    spec = SPEC_BY_MODEL[type(instance).__name__]
    key = str(instance.pk)
    version = _locked_version(spec.aggregate_type, key)
    sequence = (version.sequence if version else 0) + 1
    payload = normalize_row(spec, {f: getattr(instance, f) for f in spec.field_names})
    if version is None:
        AggregateVersion.objects.create(aggregate_type=spec.aggregate_type, aggregate_id=key,
                                        sequence=sequence, deleted=event_type == "deleted")
    else:
        version.sequence, version.deleted = sequence, event_type == "deleted"
        version.save(update_fields=["sequence", "deleted"])
    return OutboxEvent.objects.create(
        event_id=str(uuid.uuid4()), aggregate_type=spec.aggregate_type, aggregate_id=key,
        sequence=sequence, event_type=event_type, payload=payload,
        request_id=current_request_id(),
    )


def _locked_version(aggregate_type: str, key: str) -> AggregateVersion | None:
    query = AggregateVersion.objects.filter(aggregate_type=aggregate_type, aggregate_id=key)
    if connection.features.has_select_for_update:
        query = query.select_for_update()
    return query.first()


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
