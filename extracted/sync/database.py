"""A database given by URL, read with plain DB-API (sqlite3 or psycopg), no Django.

The relay, the backfill and reconcile run as separate processes next to the monolith; they
read its outbox (and, for the backfill and reconcile, the context's tables) through a URL:
``sqlite:///relative.db``, ``sqlite:////absolute.db`` or ``postgresql://user@host/db``.
Queries are written with ``?`` placeholders and translated for psycopg.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlparse

from extracted.sync.errors import DatabaseUnavailable

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def check_identifier(name: str, what: str) -> str:
    """A table or column name safe to put in SQL, or a one-line error naming it."""
    if not IDENTIFIER.match(name):
        raise DatabaseUnavailable(f"{what}: {name!r} is not a plain SQL identifier")
    return name


class Database:
    """One connection, autocommit, with ``snapshot()`` for consistent multi-query reads."""

    def __init__(self, url: str) -> None:
        self.url = url
        parsed = urlparse(url)
        self.vendor = "sqlite" if parsed.scheme == "sqlite" else "postgresql"
        if parsed.scheme not in ("sqlite", "postgres", "postgresql"):
            raise DatabaseUnavailable(
                f"database URL {redact(url)!r}: use sqlite:///path or postgresql://user@host/db"
            )
        self._conn = self._connect(parsed.path)

    def _connect(self, path: str) -> Any:
        try:
            if self.vendor == "sqlite":
                file = path[1:] if path.startswith("/") else path
                conn = sqlite3.connect(f"file:{file}?mode=rw", uri=True, timeout=20,
                                       isolation_level=None, check_same_thread=False)
                conn.row_factory = sqlite3.Row
                return conn
            import psycopg
            from psycopg.rows import dict_row

            return psycopg.connect(self.url, autocommit=True, row_factory=dict_row,
                                   connect_timeout=5)
        except Exception as exc:  # noqa: BLE001 - sqlite3 and psycopg raise unrelated types
            raise DatabaseUnavailable(
                f"cannot open {redact(self.url)}: {one_line(exc)}; check the URL and that the "
                "database exists (migrate the monolith first)"
            ) from None

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Rows as dicts; errors become ``DatabaseUnavailable`` naming the URL."""
        if self.vendor == "postgresql":
            sql = sql.replace("?", "%s")
        try:
            # psycopg reads % as a placeholder only when given parameters (PL/pgSQL uses %)
            args = tuple(params) if params or self.vendor == "sqlite" else None
            cursor = self._conn.execute(sql, args)
            if cursor.description is None:
                return []
            return [dict(row) for row in cursor.fetchall()]
        except Exception as exc:  # noqa: BLE001
            reason = one_line(exc)
            hint = ("; is this the right database, and is it migrated (`strangler monolith "
                    "migrate`)?" if _missing_table(reason) else "")
            raise DatabaseUnavailable(
                f"query on {redact(self.url)} failed: {reason}{hint}") from None

    @contextmanager
    def snapshot(self) -> Iterator[Database]:
        """Every query inside sees the same committed state (one read transaction)."""
        begin = "BEGIN" if self.vendor == "sqlite" else (
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        self.query(begin)
        try:
            yield self
        finally:
            self.query("COMMIT")

    @contextmanager
    def transaction(self) -> Iterator[Database]:
        """One write transaction (SQLite: ``BEGIN IMMEDIATE``, the write lock at once)."""
        self.query("BEGIN IMMEDIATE" if self.vendor == "sqlite" else "BEGIN")
        try:
            yield self
        except BaseException:
            self.query("ROLLBACK")
            raise
        self.query("COMMIT")

    def write_horizon(self) -> tuple[int, int] | None:
        """``(xmin, xmax)`` of a fresh snapshot on PostgreSQL; None where writers serialise.

        Every transaction with an id below ``xmin`` has ended; every one that will start
        gets an id at or above ``xmax``. A position taken by a transaction that had a
        transaction id when ``xmax`` was read is final (committed or gone) once a later
        ``xmin`` reaches that ``xmax``. The producers write their sequence row before the
        outbox row, so they hold a transaction id before they take a position. SQLite has
        one writer at a time and reuses the id of a rolled-back insert: no such wait.
        """
        if self.vendor != "postgresql":
            return None
        row = self.query("SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS xmin, "
                         "pg_snapshot_xmax(pg_current_snapshot())::text AS xmax")[0]
        return int(row["xmin"]), int(row["xmax"])

    def wait_for_writers(self, timeout: float = 600.0, poll: float = 0.05,
                         sleep: Callable[[float], None] = time.sleep) -> float:
        """Wait until every write transaction running now has ended; return the seconds.

        Raises ``DatabaseUnavailable`` naming the oldest running transaction after
        ``timeout`` seconds (a transaction left open: end it, or raise the timeout).
        """
        first = self.write_horizon()
        if first is None:
            return 0.0
        started = time.monotonic()
        while True:
            now = self.write_horizon()
            assert now is not None
            if now[0] >= first[1]:
                return round(time.monotonic() - started, 3)
            if time.monotonic() - started > timeout:
                raise DatabaseUnavailable(
                    f"{redact(self.url)}: transaction {now[0]} has been open for more than "
                    f"{timeout:.0f} s; end it (pg_stat_activity shows it) or raise the timeout")
            sleep(poll)

    def close(self) -> None:
        """Close the connection (safe to call twice)."""
        try:
            self._conn.close()
        except Exception:  # noqa: BLE001, S110 - closing a broken connection is best effort
            pass


def one_line(exc: BaseException) -> str:
    """A driver's error message on one line (psycopg's span several)."""
    return " ".join(str(exc).split())


def redact(url: str) -> str:
    """The URL without its password, for messages.

    >>> redact("postgresql://app:secret@db:5432/shop")
    'postgresql://app:***@db:5432/shop'
    """
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def _missing_table(reason: str) -> bool:
    """Whether a driver's message says a table does not exist (SQLite and PostgreSQL).

    >>> _missing_table("no such table: common_tag")
    True
    >>> _missing_table('relation "common_tag" does not exist')
    True
    """
    return "no such table" in reason or ("relation" in reason and "does not exist" in reason)
