"""Keeping two databases in step: outbox events, the relay, backfill, reconcile and repair,
and moving a context's ownership (the fence, cutover and undo).

The pure core (``events``, ``spec``, ``rows``, ``cursor``, ``repair.plan_repairs``) is plain
data and functions; the edges (``database`` for DB-API connections by URL, ``delivery`` for
HTTP, ``relay``, ``backfill``, ``reconcile``, ``repair``, ``fence``, ``cutover`` and ``cli``)
drive it. Nothing here imports Django or
``legacy_monolith``: the relay is a separate process that reads an outbox table through a
database URL and talks to services over HTTP.
"""

from __future__ import annotations

from extracted.sync.errors import BadEvent, SequenceGap, SyncError
from extracted.sync.events import OutboxEvent, event_from_json, poison_event
from extracted.sync.rows import normalize_row, row_digest, summarize
from extracted.sync.spec import (
    CATALOG,
    CATALOG_TABLES,
    SIGNAL_SPECS,
    ContextSpec,
    TableSpec,
    context_for,
    spec_for,
)

# What a service applying events uses (extracted.servicekit does, and import-linter holds it
# to these names); the relay, backfill and reconcile are run through ``cli``.
__all__ = ["CATALOG", "CATALOG_TABLES", "SIGNAL_SPECS", "BadEvent", "ContextSpec",
           "OutboxEvent", "SequenceGap", "SyncError", "TableSpec", "context_for",
           "event_from_json", "normalize_row", "poison_event", "row_digest", "spec_for",
           "summarize"]
