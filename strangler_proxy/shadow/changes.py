"""The changes of a shadowed write: the service's from its answer, the monolith's from its outbox.

A service rolls a shadowed write back and tells what it did in ``X-Strangler-Shadow-Changes``
(``strangler.shadow_changes``, the Django side): the rows it saved and deleted and the
outbox events it wrote. The monolith wrote the same request for real, its events stamped with
the ``X-Request-ID`` the proxy gave it (contract 5, format 3). Here both are read:

* :func:`split_changes` takes the header off the service's answer (it is never stored with
  the answer nor compared as a header) and parses it;
* :class:`MonolithOutbox` reads the monolith's events of one request id from its database
  (``[shadow].monolith_outbox``: a SQLite path or a ``postgresql://`` URL; the table is
  ``outbox_outboxevent``), waiting up to ``[shadow].changes_wait`` seconds for events the
  service had and the monolith does not show yet;

and :func:`changes_for` hands a :class:`~strangler_proxy.shadow.compare.ChangeSet` to
``compare``, which reports every difference as kind ``change``.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Final

from strangler_proxy.config import ProxyConfig
from strangler_proxy.exchange import RecordedResponse, ShadowOffer
from strangler_proxy.shadow.compare import ChangeSet
from strangler_proxy.shadow.sink import SAFE_METHODS
from strangler_proxy.shadow.store import store_location

CHANGES_HEADER: Final = "X-Strangler-Shadow-Changes"
OUTBOX_TABLE: Final = "outbox_outboxevent"
_POLL_SECONDS: Final = 0.05
_SQL: Final = ("SELECT aggregate_type, aggregate_id, event_type, payload FROM "
               f"{OUTBOX_TABLE} WHERE request_id = ? ORDER BY id")


class ServiceChanges:
    """The service's report of one shadowed write (``None`` fields: no or a bad header)."""

    __slots__ = ("error", "events", "total", "truncated")

    def __init__(self, events: tuple[Mapping[str, Any], ...] = (), truncated: bool = False,
                 total: int = 0, error: str = "") -> None:
        self.events, self.truncated, self.total, self.error = events, truncated, total, error


def split_changes(answer: RecordedResponse) -> tuple[RecordedResponse, ServiceChanges | None]:
    """The answer without the changes header, and the parsed header (None when absent).

    >>> a = RecordedResponse(201, (("X-Strangler-Shadow-Changes", '{"v":1,"events":[]}'),))
    >>> rest, found = split_changes(a)
    >>> rest.headers, found.events, found.error
    ((), (), '')
    """
    lower = CHANGES_HEADER.lower()
    values = [v for k, v in answer.headers if k.lower() == lower]
    if not values:
        return answer, None
    kept = tuple((k, v) for k, v in answer.headers if k.lower() != lower)
    return replace(answer, headers=kept), parse_changes(values[0])


def parse_changes(value: str) -> ServiceChanges:
    """The header's events; a header that cannot be read is an ``error``, not a crash.

    >>> parse_changes("{").error
    'X-Strangler-Shadow-Changes is not JSON'
    """
    try:
        data = json.loads(value)
    except ValueError:
        return ServiceChanges(error=f"{CHANGES_HEADER} is not JSON")
    events = data.get("events") if isinstance(data, dict) else None
    if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
        return ServiceChanges(error=f"{CHANGES_HEADER}: expected {{\"events\": [...]}}")
    truncated = bool(data.get("truncated"))
    total = data.get("events_total", len(events))
    return ServiceChanges(tuple(events), truncated,
                          total if isinstance(total, int) else len(events))


class MonolithOutbox:
    """Reads the monolith's outbox events of one request, over its own connection.

    One connection, opened on first use and reused (guarded by a lock: the worker reads
    from a thread); a failed read closes it, so the next read reconnects.
    """

    def __init__(self, location: str) -> None:
        self.location = location
        self._conn: Any = None
        self._lock = threading.RLock()  # close() may come from a reload while a read runs

    def events(self, request_id: str) -> list[dict[str, Any]]:
        """The events the monolith's transaction for ``request_id`` wrote, in order."""
        with self._lock:
            try:
                conn = self._conn = self._conn or self._connect()
                postgres = not isinstance(conn, sqlite3.Connection)
                cursor = conn.execute(_SQL.replace("?", "%s") if postgres else _SQL,
                                      (request_id,))
                rows = cursor.fetchall()
            except Exception:
                self.close()
                raise
        return [{"aggregate_type": r[0], "aggregate_id": str(r[1]), "type": r[2],
                 "payload": json.loads(r[3]) if isinstance(r[3], str) else r[3]}
                for r in rows]

    def _connect(self) -> Any:
        if self.location.startswith(("postgres://", "postgresql://")):
            import psycopg

            return psycopg.connect(self.location, autocommit=True, connect_timeout=5)
        path = self.location.removeprefix("sqlite:///")
        return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5,
                               check_same_thread=False, isolation_level=None)

    def close(self) -> None:
        """Close the connection (the next read opens a new one)."""
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                try:
                    conn.close()
                except Exception:  # noqa: BLE001, S110 - closing a broken connection
                    pass


def open_outbox(config: ProxyConfig) -> MonolithOutbox | None:
    """The monolith's outbox named by ``[shadow].monolith_outbox`` (relative to the routes
    file), or None when the key is not set (shadowed writes then compare answers only)."""
    location = config.shadow.monolith_outbox
    if not location:
        return None
    if "://" not in location:
        location = store_location(location, getattr(config, "source", None))
    return MonolithOutbox(location)


async def changes_for(outbox: MonolithOutbox | None, offer: ShadowOffer,
                      service: ServiceChanges | None, wait: float) -> ChangeSet | None:
    """The ChangeSet to compare for a shadowed write, or None when there is nothing to
    compare (a safe method, no outbox configured, or a service that sent no header)."""
    request = offer.request
    if outbox is None or service is None or request.method.upper() in SAFE_METHODS:
        return None
    if service.error:
        return ChangeSet(error=f"service: {service.error}")
    if not request.request_id:
        return ChangeSet(error="the request has no X-Request-ID to find the monolith's events")
    wanted = service.total if service.truncated else len(service.events)
    deadline = time.monotonic() + wait
    while True:
        try:
            monolith = await asyncio.to_thread(outbox.events, request.request_id)
        except Exception as exc:  # noqa: BLE001 - sqlite3 and psycopg raise unrelated types
            reason = " ".join(str(exc).split())[:160]
            return ChangeSet(error=f"monolith outbox {_redacted(outbox.location)}: {reason}")
        if len(monolith) >= wanted or time.monotonic() >= deadline:
            break
        await asyncio.sleep(_POLL_SECONDS)  # the monolith's events may still be on the way
    return ChangeSet(tuple(monolith), service.events, service.truncated, service.total)


def _redacted(location: str) -> str:
    """A location without its password.

    >>> _redacted("postgresql://u:secret@h/db")
    'postgresql://u:***@h/db'
    """
    head, at, tail = location.rpartition("@")
    if not at or ":" not in head.split("//", 1)[-1]:
        return location
    scheme, _, user = head.partition("//")
    return f"{scheme}//{user.split(':', 1)[0]}:***@{tail}"


__all__ = ["CHANGES_HEADER", "OUTBOX_TABLE", "MonolithOutbox", "ServiceChanges",
           "changes_for", "open_outbox", "parse_changes", "split_changes"]
