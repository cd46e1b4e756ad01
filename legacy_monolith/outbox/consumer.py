"""After cutover: apply the catalog service's events to the read-only product copy.

Same protocol as the service's ``/internal/events/`` (docs/data-sync.md), so the same
``strangler relay`` delivers both directions. Only ``store.Product`` events matter to the
monolith's remaining features (order lines need a product's name and price); the others
are acknowledged and ignored. At most once by event id; an event older than the copy's
sequence is stale and skipped.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db import transaction

from legacy_monolith.outbox.models import CatalogProductCopy, ConsumedEvent, ConsumerPosition


def apply_catalog_events(stream: str, events: list[dict[str, Any]], position: int
                         ) -> dict[str, int]:
    """Apply a batch in one transaction; returns the counts the relay expects."""
    counts = {"applied": 0, "duplicates": 0, "stale": 0}
    with transaction.atomic():
        seen = set(ConsumedEvent.objects.filter(event_id__in=[str(e["id"]) for e in events])
                   .values_list("event_id", flat=True))
        for event in events:
            if str(event["id"]) in seen:
                counts["duplicates"] += 1
                continue
            seen.add(str(event["id"]))
            counts[_apply(event)] += 1
            ConsumedEvent.objects.create(event_id=str(event["id"]), stream=stream,
                                         position=int(event["position"]))
        current, _ = ConsumerPosition.objects.select_for_update().get_or_create(stream=stream)
        if position > current.position:
            current.position = position
            current.save(update_fields=["position"])
    return dict(counts, position=max(position, current.position))


def _apply(event: dict[str, Any]) -> str:
    if event["aggregate_type"] != "store.Product":
        return "stale"  # acknowledged: not something the monolith keeps a copy of
    key, sequence = int(event["aggregate_id"]), int(event["sequence"])
    copy = CatalogProductCopy.objects.select_for_update().filter(product_id=key).first()
    if copy is not None and sequence <= copy.sequence:
        return "stale"
    if event["type"] == "deleted":
        CatalogProductCopy.objects.filter(product_id=key).delete()
        return "applied"
    data = event["payload"]
    CatalogProductCopy.objects.update_or_create(product_id=key, defaults={
        "sku": data["sku"], "name": data["name"], "price": Decimal(str(data["price"])),
        "currency": data["currency"], "is_active": bool(data["is_active"]),
        "sequence": sequence})
    return "applied"


def product_snapshot(product_id: int) -> CatalogProductCopy | None:
    """Name and price of a product for order lines, from the copy (after cutover)."""
    return CatalogProductCopy.objects.filter(product_id=product_id).first()


def position_of(stream: str) -> int:
    """Where the relay should resume this stream."""
    current = ConsumerPosition.objects.filter(stream=stream).first()
    return current.position if current else 0
