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
    has been delivered); it only ever moves forward. The batch is decided in memory first
    (duplicates, stale, gaps, the final state of each aggregate) and then written with a
    handful of bulk statements, whatever its size.
    """
    counts = {"applied": 0, "duplicates": 0, "stale": 0}
    with transaction.atomic():
        _one_applier_at_a_time()
        seen = set(
            ProcessedEvent.objects.filter(event_id__in=[e.id for e in events])
            .values_list("event_id", flat=True)
        )
        plan = _Plan(_versions({e.aggregate_key for e in events}))
        processed: list[ProcessedEvent] = []
        for event in events:
            if event.id in seen:
                counts["duplicates"] += 1
                continue
            seen.add(event.id)
            outcome = plan.add_event(event)
            counts[outcome] += 1
            processed.append(ProcessedEvent(
                event_id=event.id, stream=stream, position=event.position,
                aggregate_type=event.aggregate_type, aggregate_id=event.aggregate_id,
                sequence=event.sequence, outcome=outcome,
            ))
        plan.write()
        ProcessedEvent.objects.bulk_create(processed)
        new_position = _advance(stream, position)
    return ApplyResult(position=new_position, **counts)


def apply_snapshot(aggregate_type: str, rows: Iterable[Mapping[str, Any]],
                   key_range: tuple[int, int | None] | None = None,
                   deleted: Iterable[Mapping[str, Any]] = ()) -> dict[str, int]:
    """Upsert backfilled rows and drop deleted ones, unless a newer change is known.

    ``rows`` are ``{"id", "sequence", "fields"}``, ``deleted`` ``{"id", "sequence"}``: the
    source's last sequence for each, read in the same snapshot as the rows, so the event
    stream can start before or after the copy. Given ``key_range`` (inclusive, ``None`` for
    an open end), rows of that range the service has without any version (never synced,
    unknown to the source) are dropped as well.
    """
    rows, deleted = list(rows), list(deleted)
    spec = spec_for(aggregate_type)
    keys = {(aggregate_type, str(r["id"])) for r in [*rows, *deleted]}
    copied = skipped = dropped = 0
    with transaction.atomic():
        _one_applier_at_a_time()
        plan = _Plan(_versions(keys))
        strays = [] if key_range is None or spec.derived else _strays(spec, key_range, keys)
        for row in rows:
            if plan.add_state(aggregate_type, str(row["id"]), int(row["sequence"]), "updated",
                              row["fields"]):
                copied += 1
            else:
                skipped += 1
        for gone in deleted:
            dropped += plan.add_state(aggregate_type, str(gone["id"]), int(gone["sequence"]),
                                      "deleted", {})
        plan.write()
        if strays:
            model = apps.get_model("catalog", spec.model)
            model._base_manager.filter(pk__in=strays)._raw_delete(connection.alias)
    return {"copied": copied, "skipped": skipped, "deleted": dropped + len(strays)}


def _strays(spec: TableSpec, key_range: tuple[int, int | None], keys: set[Key]) -> list[int]:
    """Keys the service holds in the range that neither side ever versioned."""
    start, end = key_range
    query = apps.get_model("catalog", spec.model)._base_manager.filter(pk__gte=start)
    if end is not None:
        query = query.filter(pk__lte=end)
    here = {str(pk) for pk in query.values_list("pk", flat=True)}
    here -= {key for _, key in keys}
    if not here:
        return []
    versioned = set(AggregateVersion.objects.filter(
        aggregate_type=spec.aggregate_type, aggregate_id__in=here
    ).values_list("aggregate_id", flat=True))
    return sorted(int(k) for k in here - versioned)


Key = tuple[str, str]
APPLY_LOCK = 7_201_001  # any constant: the advisory lock of the event/backfill appliers


def _one_applier_at_a_time() -> None:
    """Serialise apply transactions (relay batches, backfill batches) until commit.

    Without it, a backfill batch and an event batch touching the same *new* aggregate could
    both see "no version yet" and the later commit would win whatever its sequence. On
    PostgreSQL an advisory transaction lock does it; on SQLite the service's transactions
    begin IMMEDIATE (settings), which takes the write lock at BEGIN.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [APPLY_LOCK])


def _versions(keys: set[Key]) -> dict[Key, AggregateVersion]:
    """The known versions of ``keys``, locked on PostgreSQL until the batch commits."""
    found: dict[Key, AggregateVersion] = {}
    by_type: dict[str, list[str]] = {}
    for kind, key in keys:
        by_type.setdefault(kind, []).append(key)
    for kind, ids in by_type.items():
        for start in range(0, len(ids), 500):
            query = AggregateVersion.objects.filter(aggregate_type=kind,
                                                    aggregate_id__in=ids[start:start + 500])
            if connection.features.has_select_for_update:
                query = query.select_for_update()
            found.update({(v.aggregate_type, v.aggregate_id): v for v in query})
    return found


class _Plan:
    """The final state of every aggregate a batch touches, then written in bulk."""

    def __init__(self, versions: dict[Key, AggregateVersion]) -> None:
        self.versions = versions
        self.sequence = {k: v.sequence for k, v in versions.items()}
        self.final: dict[Key, tuple[str, Mapping[str, Any], int]] = {}

    def add_event(self, event: OutboxEvent) -> str:
        """Decide one event: "applied" or "stale"; a skipped sequence raises SequenceGap."""
        known = self.sequence.get(event.aggregate_key)
        if known is not None and event.sequence <= known:
            return "stale"
        if known is not None and event.sequence > known + 1:
            raise SequenceGap(
                f"{event.aggregate_type}:{event.aggregate_id} expected sequence "
                f"{known + 1}, got {event.sequence} (event {event.id}): an earlier "
                "event is missing; run `strangler reconcile` and see docs/reliability.md"
            )
        self.add_state(event.aggregate_type, event.aggregate_id, event.sequence, event.type,
                       event.payload)
        return "applied"

    def add_state(self, kind: str, key: str, sequence: int, event_type: str,
                  payload: Mapping[str, Any]) -> bool:
        """Record a row's state at ``sequence`` unless a newer one is known."""
        known = self.sequence.get((kind, key))
        if known is not None and sequence <= known:
            return False
        self.sequence[(kind, key)] = sequence
        self.final[(kind, key)] = (event_type, payload, sequence)
        return True

    def write(self) -> None:
        """Delete, upsert and version every aggregate in its final state."""
        groups: dict[tuple[str, str], list[tuple[int, Mapping[str, Any]]]] = {}
        for (kind, key), (event_type, payload, _) in self.final.items():
            spec = spec_for(kind)
            groups.setdefault((kind, "deleted" if event_type == "deleted" else "upsert"),
                              []).append((_int_key(spec, key), payload))
        for (kind, action), items in sorted(groups.items()):
            spec = spec_for(kind)
            if action == "deleted":
                _delete(spec, [pk for pk, _ in items])
            else:
                _upsert(spec, items)
        self._write_versions()

    def _write_versions(self) -> None:
        rows = [AggregateVersion(aggregate_type=kind, aggregate_id=key, sequence=sequence,
                                 deleted=event_type == "deleted")
                for (kind, key), (event_type, _, sequence) in self.final.items()]
        AggregateVersion.objects.bulk_create(
            rows, batch_size=500, update_conflicts=True,
            unique_fields=["aggregate_type", "aggregate_id"], update_fields=["sequence",
                                                                             "deleted"])


def _delete(spec: TableSpec, pks: list[int]) -> None:
    model = apps.get_model("catalog", spec.model)
    if spec.aggregate_type in SIGNAL_TYPES:
        # Two aggregates share one signals row: forgetting one fact keeps the other.
        reset = {f.name: None if f.nullable else False for f in spec.fields}
        model._base_manager.filter(pk__in=pks).update(**reset)
        return
    model._base_manager.filter(pk__in=pks)._raw_delete(connection.alias)


def _upsert(spec: TableSpec, items: list[tuple[int, Mapping[str, Any]]]) -> None:
    model = apps.get_model("catalog", spec.model)
    objects = [model(pk=pk, **_values(model, spec, payload)) for pk, payload in items]
    model._base_manager.bulk_create(
        objects, batch_size=500, update_conflicts=True,
        unique_fields=[model._meta.pk.name], update_fields=list(spec.field_names),
    )
    _reset_sequences_if_needed(model)


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


def _reset_sequences_if_needed(model: type[models.Model]) -> None:
    """Rows arrive with the source's ids; on PostgreSQL move the id sequence past them.

    SQLite picks ``max(id) + 1`` by itself, so only PostgreSQL needs this, or the first
    product created through the service after cutover would collide with a copied id.
    """
    if connection.vendor != "postgresql" or not isinstance(model._meta.pk, models.AutoField):
        return
    from django.core.management.color import no_style

    with connection.cursor() as cursor:
        for sql in connection.ops.sequence_reset_sql(no_style(), [model]):
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
