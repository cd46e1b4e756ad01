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

from extracted.sync.errors import SyncError
from extracted.sync.events import OutboxEvent

__all__ = ["OutboxEvent", "SyncError"]
