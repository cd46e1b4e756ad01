"""Apply events and backfilled rows to a service: at most once, in aggregate order.

Two guards, both written in the same transaction as the change they guard:

* ``ProcessedEvent`` (unique ``event_id``): an event delivered twice is recognised and
  skipped; the relay may redeliver freely (at least once + idempotent = exactly once effect).
* ``AggregateVersion`` (last applied ``sequence`` per aggregate, kept after a delete): an
  event or a backfilled row that is not newer is *stale* and skipped.

An event of a type the context declares it ignores (another context's change on the same
stream) is acknowledged as ``ignored``. An event that cannot be applied (it skips a
sequence number, names an unknown aggregate type, lacks a field, could not even be read by
the relay, or touches a context the service owns since cutover) becomes a ``DeadLetter``
with the reason, and its aggregate is *held*: its later events are parked behind it, in
order, while every other aggregate flows on.
``retry_dead_letters`` applies a held aggregate's letters in order, ``skip_dead_letters``
gives up on some (both audited); a repair event (``reconcile --repair``) supersedes them.

Events applied here are never written to the service's own outbox: while the monolith owns
the data, the service only follows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, models, transaction
from django.db.models import Count
from django.utils import timezone
from django.utils.module_loading import import_string

from extracted.servicekit.models import (
    AggregateVersion,
    ContextOwnership,
    DeadLetter,
    ProcessedEvent,
    StreamPosition,
    SyncAudit,
    concrete,
)
from extracted.sync import (
    BadEvent,
    ContextSpec,
    OutboxEvent,
    SequenceGap,
    TableSpec,
    context_for,
    event_from_json,
)


def service_context() -> ContextSpec:
    """The context this service applies (``SERVICE_CONTEXT`` in its settings)."""
    return context_for(settings.SERVICE_CONTEXT)


def spec_for(aggregate_type: str) -> TableSpec:
    """The spec of one of the service's aggregate types; else a ``BadEvent``."""
    return service_context().spec_for(aggregate_type)


def _handlers() -> dict[str, Callable[[OutboxEvent], None]]:
    """``SERVICE_EVENT_HANDLERS``: aggregate type -> dotted path of a function taking the
    event, run in the apply's transaction (at most once per event id, like a row)."""
    names: dict[str, str] = getattr(settings, "SERVICE_EVENT_HANDLERS", {})
    return {kind: import_string(path) for kind, path in names.items()}


def _model(spec: TableSpec) -> type[models.Model]:
    return apps.get_model(spec.app_label, spec.model)


@dataclass(frozen=True)
class ApplyResult:
    """What a batch did: how many events were applied, duplicates and stale."""

    applied: int = 0
    duplicates: int = 0
    stale: int = 0
    position: int = 0
    dead_letters: int = 0
    ignored: int = 0

    def to_json(self) -> dict[str, int]:
        """The counts as the apply endpoint returns them (``ignored`` only when some were)."""
        counts = {"applied": self.applied, "duplicates": self.duplicates, "stale": self.stale,
                  "position": self.position, "dead_letters": self.dead_letters}
        return {**counts, "ignored": self.ignored} if self.ignored else counts


def apply_events(stream: str, events: Sequence[OutboxEvent], position: int) -> ApplyResult:
    """Apply a batch in order, in one transaction, and move the stream's position.

    ``position`` is the relay's low-water mark after this batch (every event at or below it
    has been delivered); it only ever moves forward. The batch is decided in memory first
    (duplicates, stale, dead letters, the final state of each aggregate) and then written
    with a handful of bulk statements, whatever its size.
    """
    counts = {"applied": 0, "duplicates": 0, "stale": 0, "dead_letters": 0, "ignored": 0}
    with transaction.atomic():
        _one_applier_at_a_time()
        _open_fence(True)
        seen = set(
            concrete(ProcessedEvent).objects.filter(event_id__in=[e.id for e in events])
            .values_list("event_id", flat=True)
        )
        keys = {e.aggregate_key for e in events}
        held = _held(keys)
        owned = _owned_types()
        plan = _Plan(_versions(keys))
        processed: list[ProcessedEvent] = []
        letters: list[DeadLetter] = []
        for event in events:
            if event.id in seen:
                counts["duplicates"] += 1
                continue
            seen.add(event.id)
            outcome, reason = _decide(plan, event, held, owned)
            if reason:
                held.add(event.aggregate_key)
                letters.append(_letter(stream, event, reason))
            counts["dead_letters" if outcome == "dead_letter" else outcome] += 1
            processed.append(concrete(ProcessedEvent)(
                event_id=event.id, stream=stream, position=event.position,
                aggregate_type=event.aggregate_type, aggregate_id=event.aggregate_id,
                sequence=event.sequence, outcome=outcome,
            ))
        plan.write()
        concrete(ProcessedEvent).objects.bulk_create(processed)
        concrete(DeadLetter).objects.bulk_create(letters)
        new_position = _advance(stream, position)
        _open_fence(False)
    return ApplyResult(position=new_position, **counts)


def _open_fence(open_: bool) -> None:
    """Let this transaction (and only it) write the fenced tables: the owner's consumer.

    See ``extracted/sync/fence.py``: other transactions keep seeing the committed ``0``.
    """
    with connection.cursor() as cursor:
        cursor.execute("UPDATE strangler_fence SET open = %s WHERE context = %s",
                       [1 if open_ else 0, settings.SERVICE_CONTEXT])


def _decide(plan: _Plan, event: OutboxEvent, held: set[Key],
            owned: frozenset[str]) -> tuple[str, str]:
    """``(outcome, dead-letter reason)`` of one event; the reason is empty when it applies."""
    if event.poison:
        return "dead_letter", f"unreadable: {event.poison}"
    if event.aggregate_type in service_context().ignores:
        return "ignored", ""  # another context's change on the same stream: not ours
    handler = _handlers().get(event.aggregate_type)
    if handler is not None:  # a message for the service's code (a saga's reply), no row
        try:
            handler(event)
        except BadEvent as exc:
            return "dead_letter", str(exc)
        return "applied", ""
    if event.aggregate_type in owned:
        return "dead_letter", (f"{event.aggregate_type} is owned by this service since "
                               "cutover: the producer must not write it (contract 6)")
    if event.aggregate_key in held and not event.is_repair:
        return "dead_letter", ("held: an earlier event of this aggregate is a dead letter "
                               "(`strangler relay dead-letters list`)")
    try:
        outcome = plan.add_event(event)
    except (SequenceGap, BadEvent) as exc:
        return "dead_letter", str(exc)
    if event.is_repair:
        _supersede(event)
        held.discard(event.aggregate_key)
    return outcome, ""


def _letter(stream: str, event: OutboxEvent, reason: str) -> DeadLetter:
    letter: DeadLetter = concrete(DeadLetter)(
        stream=stream, position=event.position, event_id=event.id,
        aggregate_type=event.aggregate_type, aggregate_id=event.aggregate_id,
        sequence=event.sequence, event=event.to_json(), reason=reason)
    return letter


def _held(keys: set[Key]) -> set[Key]:
    """The aggregates among ``keys`` that have an open dead letter."""
    if not keys:
        return set()
    types = {k for k, _ in keys}
    ids = {i for _, i in keys}
    rows = concrete(DeadLetter).objects.filter(status="open", aggregate_type__in=types,
                                     aggregate_id__in=ids).values_list("aggregate_type",
                                                                       "aggregate_id")
    return {(str(kind), str(key)) for kind, key in rows} & keys


def _owned_types() -> frozenset[str]:
    """Aggregate types of the contexts this service owns (their producer's events refused)."""
    context = service_context()
    owner = concrete(ContextOwnership).objects.filter(context=context.name).values_list(
        "owner", flat=True).first()
    return context.aggregate_types if owner == "service" else frozenset()


def _supersede(event: OutboxEvent) -> None:
    concrete(DeadLetter).objects.filter(
        status="open", aggregate_type=event.aggregate_type, aggregate_id=event.aggregate_id,
        sequence__lt=event.sequence,
    ).update(status="superseded", resolved_at=timezone.now())


def dead_letters(status: str | None = "open", limit: int = 500) -> list[dict[str, Any]]:
    """Dead letters, oldest first (``status=None``: all of them)."""
    query = concrete(DeadLetter).objects.all()
    if status:
        query = query.filter(status=status)
    return [dict(row) for row in query.values(
        "id", "stream", "position", "event_id", "aggregate_type", "aggregate_id", "sequence",
        "reason", "status", "created_at", "resolved_at")[:limit]]


def retry_dead_letters(ids: Sequence[int], actor: str) -> dict[str, Any]:
    """Apply the held aggregates of ``ids`` (all open letters when empty), each in order.

    An aggregate's letters are applied in sequence order until one still fails: that one
    keeps its (new) reason and the aggregate stays held. Audited.
    """
    with transaction.atomic():
        _one_applier_at_a_time()
        query = concrete(DeadLetter).objects.select_for_update().filter(status="open")
        if ids:
            chosen = concrete(DeadLetter).objects.filter(pk__in=ids).values_list("aggregate_type",
                                                                       "aggregate_id")
            wanted = {tuple(r) for r in chosen}
            query = query.filter(aggregate_type__in={t for t, _ in wanted},
                                 aggregate_id__in={i for _, i in wanted})
            letters = [x for x in query if (x.aggregate_type, x.aggregate_id) in wanted]
        else:
            letters = list(query)
        by_key: dict[Key, list[DeadLetter]] = {}
        for letter in sorted(letters, key=lambda x: (x.sequence, x.position, x.pk)):
            by_key.setdefault((letter.aggregate_type, letter.aggregate_id), []).append(letter)
        _open_fence(True)
        retried, still = _retry(by_key)
        _open_fence(False)
        concrete(SyncAudit).objects.create(actor=actor, action="dead-letters retry",
                                 detail={"ids": list(ids), "retried": retried, "open": still})
    return {"retried": retried, "still_open": still}


def _retry(by_key: dict[Key, list[DeadLetter]]) -> tuple[list[int], list[int]]:
    retried: list[int] = []
    still: list[int] = []
    plan = _Plan(_versions(set(by_key)))
    for letters in by_key.values():
        for n, letter in enumerate(letters):
            try:
                event = event_from_json(letter.event, f"dead letter {letter.pk}")
                outcome, reason = _decide(plan, event, set(), _owned_types())
            except BadEvent as exc:
                outcome, reason = "dead_letter", str(exc)
            if reason:
                letter.reason = reason
                letter.save(update_fields=["reason"])
                still.extend(x.pk for x in letters[n:])
                break
            letter.status, letter.resolved_at = "retried", timezone.now()
            letter.save(update_fields=["status", "resolved_at"])
            concrete(ProcessedEvent).objects.filter(event_id=letter.event_id).update(outcome=outcome)
            retried.append(letter.pk)
    plan.write()
    return retried, still


def skip_dead_letters(ids: Sequence[int], actor: str) -> dict[str, Any]:
    """Give up on the given open letters (their aggregates flow again when none is left)."""
    with transaction.atomic():
        letters = concrete(DeadLetter).objects.select_for_update()
        skipped = list(letters.filter(pk__in=ids, status="open").values_list("pk", flat=True))
        concrete(DeadLetter).objects.filter(pk__in=skipped).update(status="skipped",
                                                         resolved_at=timezone.now())
        concrete(ProcessedEvent).objects.filter(
            event_id__in=concrete(DeadLetter).objects.filter(pk__in=skipped).values("event_id")
        ).update(outcome="skipped")
        concrete(SyncAudit).objects.create(actor=actor, action="dead-letters skip",
                                 detail={"ids": list(ids), "skipped": skipped})
    return {"skipped": skipped}


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
    if aggregate_type in _owned_types():
        raise BadEvent(f"{aggregate_type}: this service owns the {settings.SERVICE_CONTEXT} "
                       "since cutover; a backfill copies into a follower only (undo the "
                       "cutover first)")
    keys = {(aggregate_type, str(r["id"])) for r in [*rows, *deleted]}
    copied = skipped = dropped = 0
    with transaction.atomic():
        _one_applier_at_a_time()
        _open_fence(True)
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
            model = _model(spec)
            model._base_manager.filter(pk__in=strays)._raw_delete(connection.alias)
        _open_fence(False)
    return {"copied": copied, "skipped": skipped, "deleted": dropped + len(strays)}


def _strays(spec: TableSpec, key_range: tuple[int, int | None], keys: set[Key]) -> list[int]:
    """Keys the service holds in the range that neither side ever versioned."""
    start, end = key_range
    query = _model(spec)._base_manager.filter(pk__gte=start)
    if end is not None:
        query = query.filter(pk__lte=end)
    here = {str(pk) for pk in query.values_list("pk", flat=True)}
    here -= {key for _, key in keys}
    if not here:
        return []
    versioned = set(concrete(AggregateVersion).objects.filter(
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
            query = concrete(AggregateVersion).objects.filter(aggregate_type=kind,
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
        """Decide one event: "applied" or "stale".

        A skipped sequence raises ``SequenceGap`` (except for a repair, whose full state
        supersedes what is missing); an unknown type or a bad payload raises ``BadEvent``.
        """
        spec = spec_for(event.aggregate_type)
        _int_key(spec, event.aggregate_id)
        known = self.sequence.get(event.aggregate_key)
        if known is not None and event.sequence <= known:
            return "stale"
        if not event.is_delete:
            _values(_model(spec), spec, event.payload)
        if known is not None and event.sequence > known + 1 and not event.is_repair:
            raise SequenceGap(
                f"{event.aggregate_type}:{event.aggregate_id} expected sequence "
                f"{known + 1}, got {event.sequence} (event {event.id}): an earlier "
                "event is missing; run `strangler reconcile` and see docs/reliability.md"
            )
        self.add_state(event.aggregate_type, event.aggregate_id, event.sequence,
                       "deleted" if event.is_delete else event.type, event.payload)
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
        model = concrete(AggregateVersion)
        rows = [model(aggregate_type=kind, aggregate_id=key, sequence=sequence,
                      deleted=event_type == "deleted")
                for (kind, key), (event_type, _, sequence) in self.final.items()]
        model.objects.bulk_create(
            rows, batch_size=500, update_conflicts=True,
            unique_fields=["aggregate_type", "aggregate_id"], update_fields=["sequence",
                                                                             "deleted"])


def _delete(spec: TableSpec, pks: list[int]) -> None:
    model = _model(spec)
    if spec.derived:
        # Two aggregates share one signals row: forgetting one fact keeps the other.
        reset = {f.name: None if f.nullable else False for f in spec.fields}
        model._base_manager.filter(pk__in=pks).update(**reset)
        return
    model._base_manager.filter(pk__in=pks)._raw_delete(connection.alias)


def _upsert(spec: TableSpec, items: list[tuple[int, Mapping[str, Any]]]) -> None:
    model = _model(spec)
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
        field = model._meta.get_field(fld.name)
        assert isinstance(field, models.Field)  # a synced column, never a reverse relation
        try:
            values[fld.name] = None if raw is None else field.to_python(raw)
        except ValidationError:
            raise BadEvent(f"{spec.aggregate_type}.payload.{fld.name}: {raw!r:.60} is not a "
                           f"valid {fld.kind}") from None
    return values


def _int_key(spec: TableSpec, key: str) -> int:
    try:
        return int(key)
    except ValueError:
        raise BadEvent(f"{spec.aggregate_type}: aggregate_id {key!r} is not an integer") from None


def _advance(stream: str, position: int) -> int:
    current: StreamPosition
    current, _ = concrete(StreamPosition).objects.get_or_create(stream=stream)
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
    current = concrete(StreamPosition).objects.filter(stream=stream).first()
    processed = concrete(ProcessedEvent).objects.filter(stream=stream)
    twice = (
        processed.filter(outcome="applied")
        .values("aggregate_type", "aggregate_id", "sequence")
        .annotate(n=Count("id")).filter(n__gt=1).count()
    )
    stuck = (concrete(DeadLetter).objects.filter(status="open").order_by()
             .values_list("aggregate_type", "aggregate_id").distinct())
    return {
        "stream": stream,
        "position": current.position if current else 0,
        "processed": processed.count(),
        "applied": processed.filter(outcome="applied").count(),
        "applied_twice": twice,
        "dead_letters": concrete(DeadLetter).objects.filter(status="open").count(),
        "stuck_aggregates": sorted(f"{t}:{i}" for t, i in stuck[:100]),
    }
