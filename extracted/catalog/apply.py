"""Apply events and backfilled rows to the catalog: at most once, in aggregate order.

Two guards, both written in the same transaction as the change they guard:

* ``ProcessedEvent`` (unique ``event_id``): an event delivered twice is recognised and
  skipped; the relay may redeliver freely (at least once + idempotent = exactly once effect).
* ``AggregateVersion`` (last applied ``sequence`` per aggregate, kept after a delete): an
  event or a backfilled row that is not newer is *stale* and skipped; an event that skips a
  sequence number raises ``SequenceGap`` (the whole batch rolls back, the relay retries).

Events applied here are never written to the service's own outbox: while the monolith owns
the data, the service only follows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.apps import apps
from django.db import connection, models, transaction
from django.db.models import Count
from django.utils import timezone

from extracted.catalog.models import AggregateVersion, ProcessedEvent, StreamPosition
from extracted.sync.errors import BadEvent, SequenceGap
from extracted.sync.events import OutboxEvent
from extracted.sync.spec import SIGNAL_SPECS, TableSpec, spec_for

SIGNAL_TYPES = frozenset(s.aggregate_type for s in SIGNAL_SPECS)


@dataclass(frozen=True)
class ApplyResult:
    """What a batch did: how many events were applied, duplicates and stale."""

    applied: int = 0
    duplicates: int = 0
    stale: int = 0
    position: int = 0

    def to_json(self) -> dict[str, int]:
        """The counts as the apply endpoint returns them."""
        return {"applied": self.applied, "duplicates": self.duplicates, "stale": self.stale,
                "position": self.position}


def apply_events(stream: str, events: Sequence[OutboxEvent], position: int) -> ApplyResult:
    """Apply a batch in order, in one transaction, and move the stream's position.

    ``position`` is the relay's low-water mark after this batch (every event at or below it
    has been delivered); it only ever moves forward.
    """
    counts = {"applied": 0, "duplicates": 0, "stale": 0}
    with transaction.atomic():
        seen = set(
            ProcessedEvent.objects.filter(event_id__in=[e.id for e in events])
            .values_list("event_id", flat=True)
        )
        for event in events:
            if event.id in seen:
                counts["duplicates"] += 1
                continue
            seen.add(event.id)
            outcome = _apply_one(event)
            counts[outcome] += 1
            ProcessedEvent.objects.create(
                event_id=event.id, stream=stream, position=event.position,
                aggregate_type=event.aggregate_type, aggregate_id=event.aggregate_id,
                sequence=event.sequence, outcome=outcome,
            )
        new_position = _advance(stream, position)
        _reset_sequences_if_needed()
    return ApplyResult(position=new_position, **counts)


def _apply_one(event: OutboxEvent) -> str:
    spec = spec_for(event.aggregate_type)
    version = _version(event.aggregate_type, event.aggregate_id)
    if version is not None and event.sequence <= version.sequence:
        return "stale"
    if version is not None and event.sequence > version.sequence + 1:
        raise SequenceGap(
            f"{event.aggregate_type}:{event.aggregate_id} expected sequence "
            f"{version.sequence + 1}, got {event.sequence} (event {event.id}): an earlier "
            "event is missing; run `strangler reconcile` and see docs/reliability.md"
        )
    _write(spec, event.aggregate_id, event.type, event.payload)
    _save_version(event.aggregate_type, event.aggregate_id, event.sequence,
                  deleted=event.type == "deleted", existing=version)
    return "applied"


def apply_snapshot(aggregate_type: str, rows: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Upsert backfilled rows ``{"id", "sequence", "fields"}`` unless a newer change is known.

    ``sequence`` is the source's last outbox sequence for that row, read in the same
    snapshot as the row, so the event stream can start before or after the copy.
    """
    spec = spec_for(aggregate_type)
    copied = skipped = 0
    with transaction.atomic():
        for row in rows:
            key, sequence = str(row["id"]), int(row["sequence"])
            version = _version(aggregate_type, key)
            if version is not None and sequence <= version.sequence:
                skipped += 1
                continue
            _write(spec, key, "updated", row["fields"])
            _save_version(aggregate_type, key, sequence, deleted=False, existing=version)
            copied += 1
        _reset_sequences_if_needed()
    return {"copied": copied, "skipped": skipped}


def _version(aggregate_type: str, aggregate_id: str) -> AggregateVersion | None:
    query = AggregateVersion.objects.filter(
        aggregate_type=aggregate_type, aggregate_id=aggregate_id
    )
    if connection.features.has_select_for_update:
        query = query.select_for_update()
    return query.first()


def _save_version(
    aggregate_type: str, aggregate_id: str, sequence: int, *, deleted: bool,
    existing: AggregateVersion | None,
) -> None:
    if existing is None:
        AggregateVersion.objects.create(
            aggregate_type=aggregate_type, aggregate_id=aggregate_id, sequence=sequence,
            deleted=deleted,
        )
        return
    existing.sequence, existing.deleted = sequence, deleted
    existing.save(update_fields=["sequence", "deleted"])


def _write(spec: TableSpec, key: str, kind: str, payload: Mapping[str, Any]) -> None:
    model = apps.get_model("catalog", spec.model)
    pk = _int_key(spec, key)
    if spec.aggregate_type in SIGNAL_TYPES:
        _write_signal(model, spec, pk, kind, payload)
        return
    if kind == "deleted":
        model._base_manager.filter(pk=pk)._raw_delete(connection.alias)
        return
    values = _values(model, spec, payload)
    if not model._base_manager.filter(pk=pk).update(**values):
        model._base_manager.create(pk=pk, **values)


def _write_signal(
    model: type[models.Model], spec: TableSpec, pk: int, kind: str, payload: Mapping[str, Any]
) -> None:
    # Two aggregates share one row: a stock change leaves the rating alone and vice versa.
    if kind == "deleted":
        values = {f.name: None if f.nullable else False for f in spec.fields}
    else:
        values = _values(model, spec, payload)
    if not model._base_manager.filter(pk=pk).update(**values):
        model._base_manager.create(pk=pk, **values)


def _values(
    model: type[models.Model], spec: TableSpec, payload: Mapping[str, Any]
) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for fld in spec.fields:
        if fld.name not in payload:
            raise BadEvent(f"{spec.aggregate_type}.payload: missing field {fld.name!r}")
        raw = payload[fld.name]
        values[fld.name] = None if raw is None else model._meta.get_field(fld.name).to_python(raw)
    return values


def _int_key(spec: TableSpec, key: str) -> int:
    try:
        return int(key)
    except ValueError:
        raise BadEvent(f"{spec.aggregate_type}: aggregate_id {key!r} is not an integer") from None


def _advance(stream: str, position: int) -> int:
    current, _ = StreamPosition.objects.get_or_create(stream=stream)
    if position > current.position:
        current.position, current.updated_at = position, timezone.now()
        current.save(update_fields=["position", "updated_at"])
    return max(position, current.position)


def _reset_sequences_if_needed() -> None:
    """Rows arrive with the source's ids; on PostgreSQL move the id sequences past them.

    SQLite picks ``max(id) + 1`` by itself, so only PostgreSQL needs this, or the first
    product created through the service after cutover would collide with a copied id.
    """
    if connection.vendor != "postgresql":
        return
    from django.core.management.color import no_style

    catalog = apps.get_app_config("catalog").get_models()
    with connection.cursor() as cursor:
        for sql in connection.ops.sequence_reset_sql(no_style(), list(catalog)):
            cursor.execute(sql)


def stream_status(stream: str) -> dict[str, Any]:
    """The stream's position, how many events it processed, and changes applied twice.

    ``applied_twice`` counts (aggregate, sequence) pairs applied more than once: always 0
    unless the producer wrote one change under two event ids.
    """
    current = StreamPosition.objects.filter(stream=stream).first()
    processed = ProcessedEvent.objects.filter(stream=stream)
    twice = (
        processed.filter(outcome="applied")
        .values("aggregate_type", "aggregate_id", "sequence")
        .annotate(n=Count("id")).filter(n__gt=1).count()
    )
    return {
        "stream": stream,
        "position": current.position if current else 0,
        "processed": processed.count(),
        "applied": processed.filter(outcome="applied").count(),
        "applied_twice": twice,
    }
