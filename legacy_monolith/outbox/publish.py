"""Write outbox events for the changes of the extracted contexts, inside the caller's
transaction.

``record`` handles one saved or deleted row; ``record_rows`` many (bulk operations). The
rows published are the catalog's and ordering's (carts, cart items, orders, order lines,
coupons): each context's service follows them while the monolith owns them, and a cutover
drains them. Rows of stock levels and reviews are not catalog rows, but the catalog shows
facts derived from them (``in_stock``, ``rating``), so a change to one publishes that
product's fact as the aggregate ``inventory.ProductStock`` or ``reviews.ProductRating``.

``silenced`` writes some models' rows without publishing them: the saga's participant
writes the ordering service's own orders (the service publishes them), the seed loads
orders before any service exists (the backfill copies them), and checkout publishes its
order once, with its number.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import connection, models
from django.db.models import Avg

from legacy_monolith.outbox.models import OutboxEvent
from strangler.shadow_changes import current_request_id

CATALOG = frozenset({"store.Category", "store.Brand", "store.Product", "store.ProductImage",
                     "store.PriceHistory", "store.ProductTag", "common.Tag"})
ORDERING = frozenset({"orders.Cart", "orders.CartItem", "orders.Order", "orders.OrderLine",
                      "orders.Coupon"})
PUBLISHED = CATALOG | ORDERING
STOCK, RATING = "inventory.ProductStock", "reviews.ProductRating"
AVAILABLE = "inventory.ProductAvailability"  # units on hand: ordering's checkout pre-check
DERIVED: dict[str, tuple[str, ...]] = {"store.StockLevel": (STOCK, AVAILABLE),
                                       "reviews.Review": (RATING,)}

UPSERT = (
    "INSERT INTO outbox_aggregatesequence (aggregate_type, aggregate_id, last) "
    "VALUES (%s, %s, 1) ON CONFLICT (aggregate_type, aggregate_id) "
    "DO UPDATE SET last = outbox_aggregatesequence.last + 1 RETURNING last"
)


_REPLAYING: ContextVar[bool] = ContextVar("outbox_replaying", default=False)
_SILENCED: ContextVar[frozenset[str]] = ContextVar("outbox_silenced", default=frozenset())


@contextmanager
def replaying() -> Iterator[None]:
    """Apply the catalog owner's events without publishing them again (no echo).

    After cutover the catalog service owns the catalog; its events are written into these
    tables by ``consumer.apply_catalog_events``, which must not send them back.
    """
    token = _REPLAYING.set(True)
    try:
        yield
    finally:
        _REPLAYING.reset(token)


@contextmanager
def silenced(labels: Iterable[str]) -> Iterator[None]:
    """Write rows of these models (``app_label.Model``) without publishing them."""
    token = _SILENCED.set(_SILENCED.get() | frozenset(labels))
    try:
        yield
    finally:
        _SILENCED.reset(token)


class OutboxError(Exception):
    """A change that cannot be published (so it is refused rather than lost)."""

    strangler_user_error = True


def publishes(model: type[models.Model]) -> bool:
    """True for models whose changes reach the outbox (directly or as a derived fact)."""
    return model._meta.label in PUBLISHED or model._meta.label in DERIVED


def next_sequence(aggregate_type: str, aggregate_id: str) -> int:
    """The aggregate's next sequence; the counter row stays locked until commit."""
    with connection.cursor() as cursor:
        cursor.execute(UPSERT, [aggregate_type, aggregate_id])
        return int(cursor.fetchone()[0])


def payload_of(instance: models.Model) -> dict[str, Any]:
    """Every concrete column but the key, as JSON values (full precision, unlike
    DjangoJSONEncoder, which cuts datetimes to milliseconds)."""
    return {f.attname: _json(f.value_from_object(instance))
            for f in instance._meta.concrete_fields if not f.primary_key}


def _json(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _event(aggregate_type: str, key: Any, event_type: str, payload: dict[str, Any]
           ) -> OutboxEvent:
    aggregate_id = str(key)
    return OutboxEvent(event_id=str(uuid.uuid4()), aggregate_type=aggregate_type,
                       aggregate_id=aggregate_id, sequence=next_sequence(aggregate_type,
                                                                         aggregate_id),
                       event_type=event_type, payload=payload,
                       request_id=current_request_id())


def record(instance: models.Model, event_type: str) -> None:
    """Publish one row's change (call inside the change's transaction)."""
    record_rows(type(instance), [instance], event_type)


def record_rows(model: type[models.Model], rows: Iterable[models.Model], event_type: str
                ) -> None:
    """Publish many rows' changes with one insert of events."""
    label = model._meta.label
    if _REPLAYING.get() or label in _SILENCED.get():
        return
    rows = list(rows)
    if label in PUBLISHED:
        events = [_event(label, r.pk, event_type, payload_of(r)) for r in rows]
    elif label in DERIVED:
        products = {r.product_id for r in rows}  # type: ignore[attr-defined]
        events = [e for fact in DERIVED[label] for e in derived_events(fact, products)]
    else:
        return
    OutboxEvent.objects.bulk_create(events)


def derived_events(aggregate_type: str, product_ids: Iterable[int]) -> list[OutboxEvent]:
    """The current stock, availability or rating fact of each product, as events.

    Availability is the units on hand (the rule of ``store.actions.available_quantity``):
    the ordering service's checkout checks a cart against it.

    The sequences are taken (and their rows locked) *before* the fact is read: a concurrent
    change of another stock level of the same product then waits for this transaction to
    commit and reads the fact after it (PostgreSQL's READ COMMITTED gives each statement a
    fresh snapshot), so the event with the higher sequence always carries the later fact.
    Reading first let two concurrent changes both publish a stale ``in_stock`` (issue 13).
    """
    from django.db.models import Sum

    from legacy_monolith.reviews.models import Review
    from legacy_monolith.store.models import StockLevel

    ids = sorted(set(product_ids))
    sequences = {p: next_sequence(aggregate_type, str(p)) for p in ids}
    if aggregate_type == STOCK:
        stocked = set(StockLevel.objects.filter(product_id__in=ids, quantity__gt=0)
                      .values_list("product_id", flat=True))
        facts: dict[int, dict[str, Any]] = {p: {"in_stock": p in stocked} for p in ids}
    elif aggregate_type == AVAILABLE:
        units = dict(StockLevel.objects.filter(product_id__in=ids, quantity__gt=0).order_by()
                     .values("product_id").annotate(units=Sum("quantity"))
                     .values_list("product_id", "units"))
        facts = {p: {"available": int(units.get(p) or 0)} for p in ids}
    else:
        averages = dict(Review.objects.filter(product_id__in=ids, status="approved")
                        .order_by().values("product_id").annotate(avg=Avg("rating"))
                        .values_list("product_id", "avg"))
        facts = {p: {"rating": None if averages.get(p) is None else float(averages[p])}
                 for p in ids}
    return [OutboxEvent(event_id=str(uuid.uuid4()), aggregate_type=aggregate_type,
                        aggregate_id=str(p), sequence=sequences[p], event_type="updated",
                        payload=facts[p], request_id=current_request_id()) for p in ids]
