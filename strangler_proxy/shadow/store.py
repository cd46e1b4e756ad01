"""The diff store: one record per compared exchange (contract 3 of ARCHITECTURE.md).

SQLite by default (one file, WAL, so the report can read while the proxy writes), PostgreSQL
when the configured store is a ``postgresql://`` URL. Retention is bounded by count and age.
Secrets are redacted by :func:`redact_record` *before* a record reaches :meth:`DiffStore.add`
(the shadow sink and replay both do it); the store itself never sends anything anywhere.

The record layout is documented in ``docs/shadow.md`` with :data:`SCHEMA_VERSION`.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode

from strangler_proxy.config import ProxyConfig
from strangler_proxy.errors import ProxyError

SCHEMA_VERSION: Final = 1
REDACTED: Final = "[redacted]"
ALWAYS_REDACTED: Final = ("authorization", "cookie", "set-cookie", "proxy-authorization")
MAX_STORED_BODY: Final = 256 * 1024
_PRUNE_EVERY = 500


class StoreError(ProxyError):
    """The diff store cannot be opened or used (bad URL, unwritable file, server down)."""


@dataclass(frozen=True, slots=True)
class DiffRecord:
    """One compared exchange, as stored. ``kind`` is "service" (monolith vs service) or
    "self" (monolith vs monolith, for learned noise); ``origin`` is "proxy" or "replay"."""

    route: str
    template: str
    method: str
    path: str
    verdict: str
    monolith_status: int
    service_status: int
    differences: tuple[dict[str, Any], ...] = ()
    kind: str = "service"
    origin: str = "proxy"
    query: str = ""
    request_id: str = ""
    request_headers: tuple[tuple[str, str], ...] = ()
    request_body: bytes = b""
    monolith_ms: float = 0.0
    service_ms: float = 0.0
    monolith_headers: tuple[tuple[str, str], ...] = ()
    service_headers: tuple[tuple[str, str], ...] = ()
    monolith_body: bytes = b""
    service_body: bytes = b""
    error: str = ""
    at: float = field(default_factory=time.time)
    id: int = 0
    schema_version: int = SCHEMA_VERSION

    def summary(self) -> dict[str, Any]:
        """The JSON-ready record without bodies (bodies are shown by the dashboard only)."""
        return {
            "id": self.id, "schema_version": self.schema_version, "at": self.at,
            "route": self.route, "template": self.template, "kind": self.kind,
            "origin": self.origin, "request": {"method": self.method, "path": self.path,
                                               "query": self.query, "id": self.request_id},
            "monolith": {"status": self.monolith_status, "ms": round(self.monolith_ms, 3)},
            "service": {"status": self.service_status, "ms": round(self.service_ms, 3)},
            "verdict": self.verdict, "differences": list(self.differences),
            "error": self.error,
        }


# -- redaction ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Redaction:
    """What to hide: header names and JSON/form/query field names (case-insensitive)."""

    headers: frozenset[str] = frozenset(ALWAYS_REDACTED)
    fields: frozenset[str] = frozenset()

    @classmethod
    def from_settings(cls, headers: Iterable[str], fields: Iterable[str]) -> Redaction:
        """Authorization, Cookie and Set-Cookie are always redacted, whatever is configured."""
        return cls(frozenset(h.lower() for h in (*ALWAYS_REDACTED, *headers)),
                   frozenset(f.lower() for f in fields))


def redact_headers(headers: Iterable[tuple[str, str]],
                   redaction: Redaction) -> tuple[tuple[str, str], ...]:
    """Headers with secret values replaced.

    >>> redact_headers([("Cookie", "s=1"), ("Accept", "*/*")], Redaction())
    (('Cookie', '[redacted]'), ('Accept', '*/*'))
    """
    return tuple((k, REDACTED if k.lower() in redaction.headers else v) for k, v in headers)


def redact_json(value: Any, fields: frozenset[str]) -> Any:
    """A JSON value with the values of secret keys replaced, at any depth.

    >>> redact_json({"user": {"password": "x", "name": "a"}}, frozenset({"password"}))
    {'user': {'password': '[redacted]', 'name': 'a'}}
    """
    if not fields:
        return value
    if isinstance(value, dict):
        return {k: REDACTED if k.lower() in fields else redact_json(v, fields)
                for k, v in value.items()}
    if isinstance(value, list):
        return [redact_json(v, fields) for v in value]
    return value


def redact_body(body: bytes, content_type: str, fields: frozenset[str]) -> bytes:
    """A body with secret fields redacted (JSON and form bodies); others kept, capped.

    A JSON body that does not parse is kept as is: it is what the side sent, and a
    secret in a malformed body is out of reach of field names anyway.
    """
    body = body[:MAX_STORED_BODY]
    if not fields or not body:
        return body
    ctype = content_type.lower()
    if "json" in ctype:
        try:
            parsed = json.loads(body)
        except ValueError:
            return body
        return json.dumps(redact_json(parsed, fields), ensure_ascii=False).encode()
    if "x-www-form-urlencoded" in ctype:
        return redact_query(body.decode("latin-1"), fields).encode("latin-1")
    return body


def redact_query(query: str, fields: frozenset[str]) -> str:
    """A query string with secret parameters replaced.

    >>> redact_query("q=shoe&token=abc", frozenset({"token"}))
    'q=shoe&token=%5Bredacted%5D'
    """
    if not query or not fields:
        return query
    pairs = parse_qsl(query, keep_blank_values=True)
    return urlencode([(k, REDACTED if k.lower() in fields else v) for k, v in pairs])


def redact_differences(differences: Iterable[dict[str, Any]],
                       redaction: Redaction) -> tuple[dict[str, Any], ...]:
    """Differences with the values of secret headers and fields replaced."""
    out = []
    for diff in differences:
        path = str(diff.get("path", ""))
        if path.startswith("headers."):
            secret = path[len("headers."):].lower() in redaction.headers
        else:  # a value anywhere under a secret key: "$.password[0]", '$.a["api key"].x'
            secret = path.startswith("$") and not redaction.fields.isdisjoint(
                key.lower() for key in path_keys(path))
        item = dict(diff)
        if secret:
            item["monolith"] = REDACTED if item.get("monolith") is not None else None
            item["service"] = REDACTED if item.get("service") is not None else None
        elif redaction.fields:
            item["monolith"] = redact_json(item.get("monolith"), redaction.fields)
            item["service"] = redact_json(item.get("service"), redaction.fields)
        out.append(item)
    return tuple(out)


_PATH_KEY: Final = re.compile(r'\.([^.\[]+)|\["((?:[^"\\]|\\.)*)"\]|\[\'((?:[^\'\\]|\\.)*)\'\]')


def path_keys(path: str) -> list[str]:
    """The object keys named along a difference's field path (list indexes left out).

    >>> path_keys('$.a["token list"][0].b')
    ['a', 'token list', 'b']
    """
    return [next(g for g in match.groups() if g is not None)
            for match in _PATH_KEY.finditer(path)]


def redact_record(record: DiffRecord, redaction: Redaction) -> DiffRecord:
    """The record as it may be stored: headers, query, bodies and differences redacted."""
    fields = redaction.fields

    def ctype(headers: Sequence[tuple[str, str]]) -> str:
        return next((v for k, v in headers if k.lower() == "content-type"), "")

    return replace(
        record,
        query=redact_query(record.query, fields),
        request_headers=redact_headers(record.request_headers, redaction),
        request_body=redact_body(record.request_body, ctype(record.request_headers), fields),
        monolith_headers=redact_headers(record.monolith_headers, redaction),
        service_headers=redact_headers(record.service_headers, redaction),
        monolith_body=redact_body(record.monolith_body, ctype(record.monolith_headers), fields),
        service_body=redact_body(record.service_body, ctype(record.service_headers), fields),
        differences=redact_differences(record.differences, redaction),
    )


# -- the store -----------------------------------------------------------------------------------

_COLUMNS: Final = (
    "schema_version", "at", "route", "template", "kind", "origin", "method", "path", "query",
    "request_id", "request_headers", "request_body", "monolith_status", "service_status",
    "verdict", "differences", "monolith_ms", "service_ms", "monolith_headers",
    "service_headers", "monolith_body", "service_body", "error",
)
_BODY_COLUMNS: Final = frozenset({"request_body", "monolith_body", "service_body"})
_SUMMARY_COLUMNS: Final = tuple(c for c in _COLUMNS if c not in _BODY_COLUMNS)


def _ddl(prefix: str, postgres: bool) -> list[str]:
    blob = "BYTEA" if postgres else "BLOB"
    real = "DOUBLE PRECISION" if postgres else "REAL"
    ident = "BIGSERIAL PRIMARY KEY" if postgres else "INTEGER PRIMARY KEY AUTOINCREMENT"
    types = {"schema_version": "INTEGER", "at": real, "monolith_status": "INTEGER",
             "service_status": "INTEGER", "monolith_ms": real, "service_ms": real}
    cols = ", ".join(f"{c} {blob if c in _BODY_COLUMNS else types.get(c, 'TEXT')}"
                     for c in _COLUMNS)
    return [
        f"CREATE TABLE IF NOT EXISTS {prefix}exchanges (id {ident}, {cols})",
        f"CREATE INDEX IF NOT EXISTS {prefix}exchanges_route_at ON {prefix}exchanges "
        "(route, at)",
        f"CREATE TABLE IF NOT EXISTS {prefix}counters (route TEXT NOT NULL, name TEXT NOT NULL,"
        " value BIGINT NOT NULL, PRIMARY KEY (route, name))",
    ]


def _row(record: DiffRecord) -> tuple[Any, ...]:
    values = {
        "request_headers": json.dumps(record.request_headers),
        "monolith_headers": json.dumps(record.monolith_headers),
        "service_headers": json.dumps(record.service_headers),
        "differences": json.dumps(record.differences, default=str),
    }
    return tuple(values.get(c, getattr(record, c)) for c in _COLUMNS)


def _record(columns: Sequence[str], row: Sequence[Any]) -> DiffRecord:
    data = dict(zip(columns, row, strict=True))
    for name in ("request_headers", "monolith_headers", "service_headers"):
        if name in data:
            data[name] = tuple(tuple(pair) for pair in json.loads(data[name] or "[]"))
    data["differences"] = tuple(json.loads(data.get("differences") or "[]"))
    for name in _BODY_COLUMNS & data.keys():
        data[name] = bytes(data[name] or b"")
    return DiffRecord(**data)


class DiffStore:
    """A diff store over a DB-API connection (SQLite or psycopg), safe across threads."""

    def __init__(self, connection: Any, postgres: bool, prefix: str = "strangler_",
                 retention_count: int = 100_000, retention_days: float = 14.0,
                 location: str = "") -> None:
        self._conn = connection
        self._postgres = postgres
        self._prefix = prefix
        self._lock = threading.Lock()
        self._since_prune = 0
        self.retention_count = retention_count
        self.retention_days = retention_days
        self.location = location
        with self._lock:
            for statement in _ddl(prefix, postgres):
                self._execute(statement)
            self._conn.commit()

    # low level
    def _sql(self, statement: str) -> str:
        return statement.replace("?", "%s") if self._postgres else statement

    def _execute(self, statement: str, params: Sequence[Any] = ()) -> Any:
        cursor = self._conn.cursor()
        cursor.execute(self._sql(statement), params)
        return cursor

    def _write(self, statement: str, rows: Sequence[Sequence[Any]]) -> None:
        with self._lock:
            try:
                self._conn.cursor().executemany(self._sql(statement), rows)
                self._conn.commit()
            except Exception:
                self._conn.rollback()
                raise

    def _read(self, statement: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            try:
                rows = self._execute(statement, params).fetchall()
                if self._postgres:
                    self._conn.commit()  # end the read transaction; we use one connection
                return list(rows)
            except Exception:
                self._conn.rollback()
                raise

    # writing
    def add(self, records: Sequence[DiffRecord]) -> None:
        """Store records (already redacted); prunes now and then to keep retention."""
        if not records:
            return
        names = ", ".join(_COLUMNS)
        marks = ", ".join("?" for _ in _COLUMNS)
        self._write(f"INSERT INTO {self._prefix}exchanges ({names}) VALUES ({marks})",
                    [_row(r) for r in records])
        self._since_prune += len(records)
        if self._since_prune >= _PRUNE_EVERY:
            self.prune()

    def add_counts(self, counts: Mapping[tuple[str, str], int]) -> None:
        """Add to named counters per route (dropped shadow calls and the like)."""
        rows = [(route, name, value) for (route, name), value in counts.items() if value]
        if rows:
            self._write(
                f"INSERT INTO {self._prefix}counters (route, name, value) VALUES (?, ?, ?) "
                f"ON CONFLICT (route, name) DO UPDATE SET value = "
                f"{self._prefix}counters.value + excluded.value", rows)

    def prune(self, now: float | None = None) -> int:
        """Delete records beyond the retention count or older than the retention age."""
        self._since_prune = 0
        cutoff = (now if now is not None else time.time()) - self.retention_days * 86400
        table = f"{self._prefix}exchanges"
        with self._lock:
            try:
                deleted = self._execute(f"DELETE FROM {table} WHERE at < ?", (cutoff,)).rowcount
                if self.retention_count > 0:
                    deleted += self._execute(
                        f"DELETE FROM {table} WHERE id <= "
                        f"(SELECT MAX(id) FROM {table}) - ?", (self.retention_count,)).rowcount
                self._conn.commit()
            except Exception:
                self._conn.rollback()
                raise
        return int(max(deleted, 0))

    # reading
    def records(self, route: str | None = None, since: float | None = None,
                kind: str | None = None, verdict: str | None = None,
                limit: int | None = None, newest_first: bool = False,
                bodies: bool = False) -> list[DiffRecord]:
        """Records matching the filters (bodies left out unless asked)."""
        columns = ("id", *(_COLUMNS if bodies else _SUMMARY_COLUMNS))
        where = _where(route=route, kind=kind, verdict=verdict)
        clauses = [f"{k} = ?" for k in where]
        params: list[Any] = list(where.values())
        if since is not None:
            clauses.append("at >= ?")
            params.append(since)
        sql = f"SELECT {', '.join(columns)} FROM {self._prefix}exchanges"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY id" + (" DESC" if newest_first else "")
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [_record(columns, row) for row in self._read(sql, params)]

    def get(self, record_id: int) -> DiffRecord | None:
        """One record with its bodies, or None."""
        columns = ("id", *_COLUMNS)
        rows = self._read(f"SELECT {', '.join(columns)} FROM {self._prefix}exchanges "
                          "WHERE id = ?", (record_id,))
        return _record(columns, rows[0]) if rows else None

    def counts(self, route: str | None = None) -> dict[tuple[str, str], int]:
        """Counters per (route, name)."""
        sql = f"SELECT route, name, value FROM {self._prefix}counters"
        rows = self._read(sql + " WHERE route = ?", (route,)) if route else self._read(sql)
        return {(r, n): int(v) for r, n, v in rows}

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()


def _where(**filters: str | None) -> dict[str, str]:
    return {k: v for k, v in filters.items() if v is not None}


def is_postgres(url: str) -> bool:
    """True for ``postgresql://`` and ``postgres://`` URLs."""
    return url.startswith(("postgresql://", "postgres://"))


def store_location(store: str, config_source: str | None = None) -> str:
    """A SQLite path relative to the routes file's directory; URLs unchanged.

    >>> store_location("diffs.sqlite3", "/etc/strangler/strangler.toml")
    '/etc/strangler/diffs.sqlite3'
    """
    if is_postgres(store) or Path(store).is_absolute() or not config_source:
        return store
    return str(Path(config_source).resolve().parent / store)


def open_store(store: str, retention_count: int = 100_000, retention_days: float = 14.0,
               prefix: str = "strangler_") -> DiffStore:
    """Open (creating if needed) the diff store at a SQLite path or PostgreSQL URL."""
    if is_postgres(store):
        return _open_postgres(store, retention_count, retention_days, prefix)
    try:
        Path(store).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(store, check_same_thread=False, timeout=10.0)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return DiffStore(conn, False, prefix, retention_count, retention_days, store)
    except (OSError, sqlite3.Error) as exc:
        raise StoreError(f"diff store {store!r}: cannot open it as SQLite: {exc}; set "
                         "[shadow].store to a writable path or a postgresql:// URL") from None


def _open_postgres(url: str, retention_count: int, retention_days: float,
                   prefix: str) -> DiffStore:
    import psycopg

    try:
        conn = psycopg.connect(url, connect_timeout=10)
        return DiffStore(conn, True, prefix, retention_count, retention_days, _safe_url(url))
    except psycopg.Error as exc:
        raise StoreError(f"diff store {_safe_url(url)}: cannot connect: "
                         f"{str(exc).strip().splitlines()[0] if str(exc).strip() else exc!r}; "
                         "check [shadow].store") from None


def _safe_url(url: str) -> str:
    """The URL without its password (for messages)."""
    head, sep, tail = url.partition("@")
    if not sep or ":" not in head.split("//", 1)[-1]:
        return url
    scheme, _, userinfo = head.partition("//")
    return f"{scheme}//{userinfo.split(':', 1)[0]}:***@{tail}"


def open_config_store(config: ProxyConfig) -> DiffStore:
    """Open the store a routes file names, applying its retention settings."""
    shadow = config.shadow
    location = store_location(shadow.store, getattr(config, "source", None))
    return open_store(location, shadow.retention_count, shadow.retention_days)
