"""After cutover: apply a service's events to the monolith's own tables (the reverse stream).

The catalog's here; ordering's rows go through ``apply_row`` too, from the saga's endpoint
(``participants``), which shares ``consume_batch``.

Same protocol as the service's ``/internal/events/`` (docs/data-sync.md), so the same
``strangler relay`` delivers both directions. Once the service owns the catalog, the
monolith's ``store_*`` / ``common_tag`` tables are fenced (``extracted/sync/fence.py``):
only this consumer writes them, opening the fence inside its own transaction. So they stay
a faithful copy for the monolith's remaining readers (ordering, reporting), and an undo of
the cutover finds them current: nothing the service accepted is lost.

Per aggregate: an event whose sequence is not above ``AggregateSequence.last`` is stale;
otherwise the row is written (or deleted, with its cascades) without publishing it again
(``publish.replaying``), and the counter moves to the event's sequence, so after an undo the
monolith's next change continues the service's sequence. ``CatalogProductCopy`` (what
ordering needs) is kept as before. At most once by event id.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from django.apps import apps
from django.db import connection, models, transaction
from django.db.models import ProtectedError

from legacy_monolith.outbox.models import (
    AggregateSequence,
    CatalogProductCopy,
    ConsumedEvent,
    ConsumerPosition,
)
from legacy_monolith.outbox.publish import CATALOG, replaying

DELETES = ("deleted", "repair_deleted")


def apply_catalog_events(stream: str, events: list[dict[str, Any]], position: int
                         ) -> dict[str, int]:
    """Apply a batch in one transaction; returns the counts the relay expects."""
    with replaying():
        return consume_batch(stream, events, position, "catalog", _apply)


def consume_batch(stream: str, events: list[dict[str, Any]], position: int, context: str,
                  handle: Callable[[dict[str, Any]], str]) -> dict[str, int]:
    """The relay protocol's receiving end, for every stream the monolith consumes.

    One transaction: the fence of ``context`` opened for it alone (``extracted/sync/
    fence.py``), each event handled at most once by id (``ConsumedEvent``; ``handle`` says
    ``"applied"`` or ``"stale"``), the stream's position moved forward only.
    """
    counts = {"applied": 0, "duplicates": 0, "stale": 0}
    with transaction.atomic():
        _open_fence(context, True)
        seen = set(ConsumedEvent.objects.filter(event_id__in=[str(e["id"]) for e in events])
                   .values_list("event_id", flat=True))
        for event in events:
            if str(event["id"]) in seen:
                counts["duplicates"] += 1
                continue
            seen.add(str(event["id"]))
            counts[handle(event)] += 1
            ConsumedEvent.objects.create(event_id=str(event["id"]), stream=stream,
                                         position=int(event["position"]))
        current, _ = ConsumerPosition.objects.select_for_update().get_or_create(stream=stream)
        if position > current.position:
            current.position = position
            current.save(update_fields=["position"])
        _open_fence(context, False)
    return dict(counts, position=max(position, current.position))


def _open_fence(context: str, open_: bool) -> None:
    with connection.cursor() as cursor:
        cursor.execute("UPDATE strangler_fence SET open = %s WHERE context = %s",
                       [1 if open_ else 0, context])


def _apply(event: dict[str, Any]) -> str:
    kind = str(event["aggregate_type"])
    if kind not in CATALOG:
        return "stale"  # acknowledged: not a catalog row
    outcome = apply_row(event)
    if outcome == "applied" and kind == "store.Product":
        _copy_product(int(event["aggregate_id"]), int(event["sequence"]), event)
    return outcome


# Given the row's model, key and decoded values, drop the values the monolith must keep
Keep = Callable[[type[models.Model], str, dict[str, Any]], dict[str, Any]]


def apply_row(event: dict[str, Any], keep: Keep | None = None) -> str:
    """Write one row event of a context the monolith follows (catalog, ordering).

    ``"stale"`` when its sequence is not above the aggregate's counter; otherwise the row is
    upserted (or deleted, with its cascades) without signals, and the counter moves to the
    event's sequence, so after an undo the monolith's next change continues the service's
    sequence. ``keep`` may drop values the monolith must not take from the event (see
    ``participants``: the status of an order whose charge the monolith holds).
    """
    kind = str(event["aggregate_type"])
    key, sequence = str(event["aggregate_id"]), int(event["sequence"])
    counter = (AggregateSequence.objects.select_for_update()
               .filter(aggregate_type=kind, aggregate_id=key).first())
    if counter is not None and sequence <= counter.last:
        return "stale"
    model = apps.get_model(kind)
    if event["type"] in DELETES:
        _delete(model, key)
    else:
        _upsert(model, key, event["payload"], keep)
    AggregateSequence.objects.update_or_create(aggregate_type=kind, aggregate_id=key,
                                               defaults={"last": sequence})
    return "applied"


def _upsert(model: type[models.Model], key: str, payload: dict[str, Any],
            keep: Keep | None = None) -> None:
    columns = {f.attname: f for f in model._meta.concrete_fields if not f.primary_key}
    values = {name: None if payload[name] is None else columns[name].to_python(payload[name])
              for name in payload if name in columns}
    if keep is not None:
        values = keep(model, key, values)
    rows = model._base_manager.filter(pk=int(key))
    if not rows.update(**values):  # a plain UPDATE: auto_now must not replace the owner's time
        model._base_manager.bulk_create([model(pk=int(key), **values)])
        rows.update(**values)  # the insert ran auto_now/auto_now_add: set the owner's values


def _delete(model: type[models.Model], key: str) -> None:
    row = model._base_manager.filter(pk=int(key)).first()
    if row is None:
        return
    try:
        with transaction.atomic():
            row.delete()  # cascades (stock levels, reviews) as the monolith's own delete does
    except ProtectedError:
        # Order lines keep the product (PROTECT): the service deleted a product the
        # monolith's orders still name. Kept, inactive; reconcile shows it (a known wart).
        model._base_manager.filter(pk=int(key)).update(is_active=False)


def _copy_product(key: int, sequence: int, event: dict[str, Any]) -> None:
    if event["type"] in DELETES:
        CatalogProductCopy.objects.filter(product_id=key).delete()
        return
    data = event["payload"]
    CatalogProductCopy.objects.update_or_create(product_id=key, defaults={
        "sku": data["sku"], "name": data["name"], "price": Decimal(str(data["price"])),
        "currency": data["currency"], "is_active": bool(data["is_active"]),
        "sequence": sequence})


def product_snapshot(product_id: int) -> CatalogProductCopy | None:
    """Name and price of a product for order lines, from the copy (after cutover)."""
    return CatalogProductCopy.objects.filter(product_id=product_id).first()


def position_of(stream: str) -> int:
    """Where the relay should resume this stream."""
    current = ConsumerPosition.objects.filter(stream=stream).first()
    return current.position if current else 0
