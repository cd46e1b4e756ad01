"""Internal endpoints for the sync machinery, protected by ``SERVICE_SYNC_TOKEN``.

``POST /internal/events/``     apply a batch of events (relay); 409 on a sequence gap
``GET  /internal/events/``     the stream's position (``?stream=``), where the relay resumes
``POST /internal/snapshot/``   upsert backfilled rows unless a newer change is known
``GET  /internal/checksums/``  per-range counts and digests of one aggregate type
``GET  /internal/rows/``       per-row digests of one key range (reconcile's drill-down)
``GET  /internal/versions/``   every aggregate's last applied sequence (reconcile)
``GET  /internal/dead-letters/``   open dead letters (``?status=all`` for every one)
``POST /internal/dead-letters/``   ``{"action": "retry"|"skip", "ids": [...], "actor"}``
``GET|POST /internal/ownership/``  who writes the context now (cutover flips it)
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from extracted.servicekit import apply, digests
from extracted.servicekit.models import AggregateVersion, ContextOwnership, SyncAudit, concrete
from extracted.servicekit.permissions import HasSyncToken
from extracted.sync import BadEvent, OutboxEvent, SequenceGap, event_from_json, poison_event


class InternalView(APIView):
    """Token-protected, no user authentication, JSON in and out."""

    authentication_classes: list[Any] = []
    permission_classes = [HasSyncToken]

    def handle_exception(self, exc: Exception) -> Response:
        if isinstance(exc, SequenceGap):
            return Response({"detail": str(exc), "code": "sequence_gap"}, status=409)
        if isinstance(exc, BadEvent):
            return Response({"detail": str(exc), "code": "bad_event"}, status=400)
        return super().handle_exception(exc)


def _stream(value: Any) -> str:
    if not isinstance(value, str) or not value or len(value) > 64:
        raise ParseError("stream: give a name of 1 to 64 characters, e.g. ?stream=monolith")
    return value


class EventsView(InternalView):
    """Apply a batch of outbox events; report the stream's position."""

    def get(self, request: Request) -> Response:
        return Response(apply.stream_status(_stream(request.query_params.get("stream"))))

    def post(self, request: Request) -> Response:
        body = request.data
        if not isinstance(body, dict) or not isinstance(body.get("events"), list):
            raise ParseError('body: expected {"stream", "position", "events": [...]}')
        events = [_event_or_poison(e, f"events[{i}]") for i, e in enumerate(body["events"])]
        position = body.get("position", max((e.position for e in events), default=0))
        if not isinstance(position, int):
            raise ParseError(f"position: expected an integer, got {position!r}")
        result = apply.apply_events(_stream(body.get("stream")), events, position)
        return Response(result.to_json())


def _event_or_poison(data: Any, where: str) -> OutboxEvent:
    """A broken event is dead-lettered by the apply, not refused with the whole batch."""
    try:
        return event_from_json(data, where)
    except BadEvent as exc:
        if isinstance(data, dict) and str(data.get("format", 1)) not in ("1", "2", "3"):
            raise  # a newer format: the consumer must be upgraded, nothing is applied
        return poison_event(data, str(exc))


class DeadLettersView(InternalView):
    """List, retry and skip dead letters (retry and skip are audited)."""

    def get(self, request: Request) -> Response:
        status = request.query_params.get("status", "open")
        return Response({"dead_letters": apply.dead_letters(None if status == "all"
                                                            else status)})

    def post(self, request: Request) -> Response:
        body = request.data if isinstance(request.data, dict) else {}
        ids, actor, action = body.get("ids", []), str(body.get("actor") or "unknown"), body.get(
            "action")
        if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
            raise ParseError(f"ids: expected a list of integers, got {ids!r}")
        if action == "retry":
            return Response(apply.retry_dead_letters(ids, actor))
        if action == "skip":
            if not ids:
                raise ParseError("skip: name the dead letters to skip (ids)")
            return Response(apply.skip_dead_letters(ids, actor))
        raise ParseError(f"action: {action!r} is not retry or skip")


class OwnershipView(InternalView):
    """Who writes a context's tables: ``monolith`` or ``service`` (audited flips)."""

    def get(self, request: Request) -> Response:
        context = str(request.query_params.get("context", settings.SERVICE_CONTEXT))
        row = concrete(ContextOwnership).objects.filter(context=context).first()
        return Response({"context": context, "owner": row.owner if row else "monolith"})

    def post(self, request: Request) -> Response:
        body = request.data if isinstance(request.data, dict) else {}
        context = str(body.get("context", settings.SERVICE_CONTEXT))
        owner = body.get("owner")
        if owner not in ("monolith", "service"):
            raise ParseError(f"owner: {owner!r} is not monolith or service")
        concrete(ContextOwnership).objects.update_or_create(context=context,
                                                            defaults={"owner": owner})
        concrete(SyncAudit).objects.create(actor=str(body.get("actor") or "unknown"),
                                           action="ownership",
                                           detail={"context": context, "owner": owner})
        return Response({"context": context, "owner": owner})


class SnapshotView(InternalView):
    """Upsert rows copied by the backfill."""

    def post(self, request: Request) -> Response:
        body = request.data
        if not isinstance(body, dict) or not isinstance(body.get("rows"), list):
            raise ParseError('body: expected {"aggregate_type", "rows": [{"id", "sequence", '
                             '"fields"}]}')
        key_range = body.get("range")
        if key_range is not None and not (isinstance(key_range, list) and len(key_range) == 2):
            raise ParseError(f"range: expected [start, end or null], got {key_range!r}")
        return Response(apply.apply_snapshot(
            str(body.get("aggregate_type")), body["rows"],
            None if key_range is None else (int(key_range[0]), key_range[1]),
            body.get("deleted") or []))


class ChecksumsView(InternalView):
    """Per-range counts and digests of one aggregate type."""

    def get(self, request: Request) -> Response:
        kind = str(request.query_params.get("aggregate_type", ""))
        size = _positive(request.query_params.get("range_size", "1000"), "range_size")
        return Response(digests.checksums(kind, size))


class RowsView(InternalView):
    """Per-row digests (and fields) of one key range ``[start, end)``."""

    def get(self, request: Request) -> Response:
        params = request.query_params
        kind = str(params.get("aggregate_type", ""))
        start = _positive(params.get("start", "0"), "start", minimum=0)
        end = _positive(params.get("end", "0"), "end", minimum=0)
        return Response(digests.rows(kind, start, end))


class VersionsView(InternalView):
    """Every aggregate's last applied sequence (tombstones included)."""

    def get(self, request: Request) -> Response:
        query = concrete(AggregateVersion).objects.order_by("aggregate_type", "aggregate_id")
        types = request.query_params.getlist("aggregate_type")
        if types:
            query = query.filter(aggregate_type__in=types)
        rows = query.values("aggregate_type", "aggregate_id", "sequence", "deleted")
        return Response({"versions": list(rows)})


def _positive(value: Any, name: str, minimum: int = 1) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ParseError(f"{name}: expected an integer, got {value!r}") from None
    if number < minimum:
        raise ParseError(f"{name}: {number} is below {minimum}")
    return number
