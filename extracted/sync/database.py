"""A database given by URL, read with plain DB-API (sqlite3 or psycopg), no Django.

The relay, the backfill and reconcile run as separate processes next to the monolith; they
read its outbox (and, for the backfill and reconcile, the context's tables) through a URL:
``sqlite:///relative.db``, ``sqlite:////absolute.db`` or ``postgresql://user@host/db``.
Queries are written with ``?`` placeholders and translated for psycopg.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator, Sequence
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
            cursor = self._conn.execute(sql, tuple(params))
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
