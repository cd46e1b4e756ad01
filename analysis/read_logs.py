"""Readers for query logs; each yields :class:`Statement` records (the log contract).

Formats, recognised from the content (not the file name, except ``.sql``):

* the monolith's capture middleware: JSON lines with ``request_id``, ``route_pattern``,
  ``view``, ``sql``, ``in_transaction`` (one request = one co-access unit);
* PostgreSQL server log with ``log_statement=all``: stderr (``LOG:  statement: ...``,
  ``execute <name>: ...``, ``duration: ... statement: ...``; continuation lines) and csvlog
  (statements grouped by session and virtual transaction);
* MySQL general query log (grouped by connection between ``BEGIN`` and ``COMMIT``);
* plain ``.sql`` files (one statement per ``;``).
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from analysis.errors import UnreadableLog
from analysis.extract_endpoints import route_template
from analysis.facts import Statement

_Reader = Callable[[Iterable[str], str], Iterator[Statement]]
_CSV_START = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)? ?[A-Z]*,")
_PG_LINE = re.compile(
    r"^(?P<prefix>.*?)\b(?:LOG|STATEMENT):\s+(?:duration: [\d.]+ ms\s+)?"
    r"(?P<kind>statement|execute [^:]*):\s?(?P<sql>.*)$")
_PG_OTHER = re.compile(r"^\S.*\b(?:LOG|ERROR|DETAIL|HINT|STATEMENT|FATAL|WARNING|NOTICE):")
_PG_PID = re.compile(r"\[(\d+)\]|pid=(\d+)")
_MY_LINE = re.compile(
    r"^(?:\d{4}-\d\d-\d\dT[\d:.]+Z?|\d{6}\s+[\d:]+)?\s+(?P<conn>\d+)\s"
    r"(?P<cmd>Query|Execute|Connect|Quit|Init DB|Prepare|Close stmt|Field List)\t?(?P<arg>.*)$")
_BEGIN = re.compile(r"^\s*(BEGIN|START\s+TRANSACTION)\b", re.I)
_END = re.compile(r"^\s*(COMMIT|ROLLBACK|END)\b", re.I)
_SKIP = re.compile(r"^\s*(SET|SHOW|SAVEPOINT|RELEASE|BEGIN|START\s+TRANSACTION|COMMIT|ROLLBACK|"
                   r"END|DEALLOCATE|DISCARD)\b", re.I)


def read_query_log(path: Path) -> Iterator[Statement]:
    """Statements of one log file, whatever its format.

    Raises :class:`UnreadableLog` when the file cannot be opened or the format is unknown.
    """
    try:
        with path.open("r", encoding="utf-8", errors="replace") as fh:
            head = [line for line in (fh.readline() for _ in range(50)) if line.strip()]
    except OSError as exc:
        raise UnreadableLog(f"{path}: cannot read query log ({exc.strerror}); "
                            "pass a readable file to --query-log") from None
    reader = _sniff(path, head)
    if reader is None:
        raise UnreadableLog(
            f"{path}: query log format not recognised (first line: {head[0][:60]!r}); "
            "expected capture JSON lines, a PostgreSQL stderr/csv log, a MySQL general log "
            "or a .sql file" if head else f"{path}: query log is empty")
    with path.open("r", encoding="utf-8", errors="replace", newline="") as fh:
        yield from reader(fh, path.name)


def _sniff(path: Path, head: list[str]) -> _Reader | None:
    if path.suffix == ".sql":
        return read_sql_file
    if not head:
        return None
    first = head[0].lstrip()
    if first.startswith("{"):
        return read_capture
    if _CSV_START.match(first):
        return read_pg_csv
    if any(_MY_LINE.match(h) or "Id Command    Argument" in h for h in head):
        return read_mysql_general
    if any(_PG_LINE.match(h) for h in head):
        return read_pg_stderr
    return None


def read_capture(lines: Iterable[str], name: str) -> Iterator[Statement]:
    """The capture middleware's JSON lines; bad lines are skipped (counted by the caller)."""
    loads = json.loads
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = loads(line)
            sql = rec["sql"]
            route = rec.get("route_pattern") or rec.get("route")
            view, request = rec.get("view"), rec.get("request_id")
        except (ValueError, KeyError, TypeError, AttributeError):
            yield Statement("", source=f"{name}:{n}")
            continue
        # a field of the wrong type (a number for sql, a list for a route) is a bad line,
        # skipped and counted like one that is not JSON, never a traceback
        if not isinstance(sql, str) or not all(isinstance(x, str | None) for x in (
                route, view)) or not isinstance(request, str | int | None):
            yield Statement("", source=f"{name}:{n}")
            continue
        endpoint = _endpoint(route) if route else view
        yield Statement(sql, None if request is None else str(request), endpoint,
                        f"{name}:{n}", bool(rec.get("in_transaction")))


def _endpoint(route: str) -> str:
    template, _ = route_template(route.lstrip("/"), route.startswith("^"))
    return "/" + template


def read_pg_stderr(lines: Iterable[str], name: str) -> Iterator[Statement]:
    """PostgreSQL stderr log with ``log_statement=all``."""
    current: list[str] = []
    session = ""
    source = ""
    tx: dict[str, str | None] = {}
    for n, line in enumerate(lines, 1):
        m = _PG_LINE.match(line)
        if m is None and current and line[:1] in "\t " and not _PG_OTHER.match(line):
            current.append(line.strip())
            continue
        if current:
            yield from _flush(" ".join(current), session, source, tx)
            current = []
        if m is not None:
            pid = _PG_PID.search(m["prefix"])
            session = (pid.group(1) or pid.group(2)) if pid else ""
            source = f"{name}:{n}"
            current = [m["sql"]]
    if current:
        yield from _flush(" ".join(current), session, source, tx)


def _flush(sql: str, session: str, source: str, tx: dict[str, str | None]
           ) -> Iterator[Statement]:
    if _BEGIN.match(sql):
        tx[session] = f"{session}:{source}" if session else None
        return
    if _END.match(sql):
        tx.pop(session, None)
        return
    if _SKIP.match(sql):
        return
    request = tx.get(session)
    yield Statement(sql, request, None, source, request is not None)


def read_pg_csv(lines: Iterable[str], name: str) -> Iterator[Statement]:
    """PostgreSQL csvlog: message ``statement: ...``, grouped by session and transaction."""
    for n, row in enumerate(csv.reader(lines), 1):
        if len(row) < 14:
            continue
        message = row[13]
        m = re.match(r"(?:duration: [\d.]+ ms\s+)?(?:statement|execute [^:]*):\s?(.*)",
                     message, re.S)
        if m is None or _SKIP.match(m.group(1)):
            continue
        vxid = row[9]
        request = f"{row[5]}/{vxid}" if vxid and not vxid.endswith("/0") else None
        yield Statement(m.group(1), request, None, f"{name}:{n}", request is not None)


def read_mysql_general(lines: Iterable[str], name: str) -> Iterator[Statement]:
    """MySQL general query log; continuation lines belong to the statement above."""
    current: list[str] = []
    conn = ""
    source = ""
    tx: dict[str, str | None] = {}
    for n, line in enumerate(lines, 1):
        m = _MY_LINE.match(line.rstrip("\n"))
        if m is None:
            if current and not line.startswith(("Time ", "Tcp port", "/")):
                current.append(line.strip())
            continue
        if current:
            yield from _flush(" ".join(current), conn, source, tx)
            current = []
        if m["cmd"] in ("Query", "Execute"):
            conn, source, current = m["conn"], f"{name}:{n}", [m["arg"]]
    if current:
        yield from _flush(" ".join(current), conn, source, tx)


def read_sql_file(lines: Iterable[str], name: str) -> Iterator[Statement]:
    """A plain SQL script; ``--`` comments dropped, statements split on ``;``."""
    text = "".join(line for line in lines if not line.lstrip().startswith("--"))
    for i, part in enumerate(re.split(r";\s*(?:\n|$)", text)):
        if part.strip() and not _SKIP.match(part):
            yield Statement(part.strip(), None, None, f"{name}#{i + 1}")

