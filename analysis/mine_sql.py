"""Pass 7: mine SQL from code and query logs into read/write sets per endpoint and request.

Statements are *fingerprinted* (literals, placeholders and ``IN`` lists normalised), so
each distinct shape is parsed once by sqlglot; the parsed access of each shape is kept in
the cache across runs. Unparsable shapes are counted with the parser's reason.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import replace
from itertools import chain
from typing import Any

from analysis.errors import UnknownDialect
from analysis.facts import SqlSummary, Statement, TableAccess
from analysis.read_logs import read_query_log
from analysis.state import Analysis

_STRING = re.compile(r"'(?:[^'\\]|''|\\.)*'")
_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?:e[+-]?\d+)?\b", re.I)
_PLACEHOLDER = re.compile(r"%\(\w+\)s|%s|\$\d+|:\w+\b|\?")
_IN_LIST = re.compile(r"\(\s*\?(?:\s*,\s*\?)+\s*\)")
_VALUES = re.compile(r"(\(\s*\?(?:\s*,\s*\?)*\s*\))(?:\s*,\s*\(\s*\?(?:\s*,\s*\?)*\s*\))+")
_SPACE = re.compile(r"\s+")
# where a transaction begins or ends (a savepoint is inside one)
_EDGE = re.compile(r"^\s*(BEGIN|START\s+TRANSACTION|COMMIT|ROLLBACK|END)\b(?!.*\bTO\b)", re.I)
_CONTROL = re.compile(r"^\s*(SET|SHOW|SAVEPOINT|RELEASE|ROLLBACK|BEGIN|START\s+TRANSACTION|COMMIT|"
                      r"END|DEALLOCATE|DISCARD)\b", re.I)


def fingerprint(sql: str) -> str:
    """The shape of a statement: literals and placeholders as ``?``, lists collapsed.

    >>> fingerprint("SELECT * FROM t WHERE id IN (1, 2, 3) AND name = 'x'")
    'SELECT * FROM t WHERE id IN (?) AND name = ?'
    >>> fingerprint("select * from t where id = %s") == fingerprint("select * from t where id = 7")
    True
    """
    s = _STRING.sub("?", sql)
    s = _PLACEHOLDER.sub("?", s)
    s = _NUMBER.sub("?", s)
    s = _IN_LIST.sub("(?)", s)
    s = _VALUES.sub(r"\1", s)
    return _SPACE.sub(" ", s).strip().rstrip(";")


def check_dialect(dialect: str | None) -> None:
    """Raise :class:`UnknownDialect` for a name sqlglot does not know."""
    if dialect is None:
        return
    from sqlglot.dialects.dialect import Dialect

    try:
        Dialect.get_or_raise(dialect)
    except ValueError:
        raise UnknownDialect(
            f"--dialect {dialect!r}: unknown SQL dialect; use one of postgres, mysql, sqlite, "
            "oracle, tsql, bigquery, snowflake, duckdb") from None


def mine_sql(a: Analysis) -> Analysis:
    """Read every statement and fold its tables into the :class:`SqlSummary`."""
    check_dialect(a.options.dialect)
    cache: dict[str, TableAccess] = a.cache.sql if a.cache is not None else {}
    miner = _Miner(a.options.dialect, cache, a.options.progress)
    logs = [read_query_log(p) for p in a.options.query_logs]  # opened early: errors first
    miner.consume(chain(_code_statements(a), *logs))
    if a.cache is not None and miner.new_shapes:
        a.cache.dirty = True
    return replace(a, sql=miner.summary)


def _code_statements(a: Analysis) -> Iterator[Statement]:
    view_endpoints: dict[str, str] = {}
    for e in a.endpoints:
        view_endpoints.setdefault(e.view, e.template)
    for f in a.facts:
        for u in f.units:
            unit = f"{f.module}.{u.name}"
            for s in u.sql:
                sql = s.sql or "SELECT 1 FROM " + ", ".join(s.tables)
                endpoint = view_endpoints.get(unit) or _owner_endpoint(unit, view_endpoints)
                yield Statement(sql, None, endpoint or f"code:{unit}", f"{f.path}:{s.line}")


def _owner_endpoint(unit: str, views: dict[str, str]) -> str | None:
    return next((t for v, t in views.items() if v.startswith(unit + ".")), None)


class _Miner:
    """Folds statements into a summary, parsing each fingerprint once."""

    def __init__(self, dialect: str | None, cache: dict[str, TableAccess],
                 progress: object) -> None:
        self.dialect = dialect
        self.cache = cache
        self.summary = SqlSummary()
        self.new_shapes = 0
        self.progress = progress
        self.lone: Counter[tuple[str | None, frozenset[str], frozenset[str]]] = Counter()
        self.open: dict[str, list[Any]] = {}  # request -> [endpoint, tables written, source]

    def transaction(self, st: Statement, writes: frozenset[str]) -> None:
        """Fold a statement into its request's open transaction: the statements a request
        runs inside a transaction, one after the other (a statement outside one, a BEGIN,
        COMMIT or ROLLBACK ends it); a log grouped by transaction gives each its own id."""
        request = st.request or ""
        if not st.in_transaction:
            self.end_transaction(request)
            return
        tx = self.open.get(request)
        if tx is None:
            tx = self.open[request] = [st.endpoint, set(), st.source]
        tx[1].update(writes)

    def end_transaction(self, request: str) -> None:
        tx = self.open.pop(request, None)
        if tx is None or len(tx[1]) < 2:
            return
        seen = self.summary.transactions.setdefault((tx[0], frozenset(tx[1])), [0, tx[2]])
        seen[0] += 1

    def access(self, fp: str, sql: str) -> TableAccess:
        key = f"{self.dialect}|{fp}"
        found = self.cache.get(key)
        if found is None:
            found = _parse(sql, self.dialect)
            self.cache[key] = found
            self.new_shapes += 1
        return found

    def consume(self, statements: Iterable[Statement]) -> None:
        s = self.summary
        shapes, counts, requests = s.shapes, s.shape_count, s.requests
        for st in statements:
            s.statements += 1
            if not st.sql:
                s.unparsed.setdefault("<unreadable log line>", st.source)
                s.bad_lines += 1
                continue
            if _CONTROL.match(st.sql):  # transaction control and session settings: no tables
                s.control += 1
                if st.request is not None and _EDGE.match(st.sql):
                    self.end_transaction(st.request)
                continue
            fp = fingerprint(st.sql)
            acc = shapes.get(fp)
            if acc is None:
                acc = shapes[fp] = self.access(fp, st.sql)
                s.shape_sql[fp] = st.sql[:500]
                s.shape_source[fp] = st.source
                if acc.error:
                    s.unparsed[fp] = acc.error
            counts[fp] = counts.get(fp, 0) + 1
            if acc.error or not (acc.reads or acc.writes):
                continue
            if st.request is not None:
                self.transaction(st, acc.writes)
            if st.request is None:
                self.lone[(st.endpoint, acc.reads, acc.writes)] += 1
            else:
                entry = requests.get(st.request)
                if entry is None:
                    entry = requests[st.request] = (st.endpoint, set(), set())
                entry[1].update(acc.reads)
                entry[2].update(acc.writes)
            if st.endpoint:
                per = s.endpoint_tables.setdefault(st.endpoint, {"reads": set(), "writes": set()})
                per["reads"] |= acc.reads
                per["writes"] |= acc.writes
                s.endpoint_shape.setdefault(st.endpoint, fp)
        for request in list(self.open):
            self.end_transaction(request)
        shapes_out: Counter[tuple[str | None, frozenset[str], frozenset[str]]] = Counter(self.lone)
        for endpoint, reads, writes in requests.values():
            shapes_out[(endpoint, frozenset(reads), frozenset(writes))] += 1
        s.request_shapes = dict(shapes_out)
        s.requests = {}


def _parse(sql: str, dialect: str | None) -> TableAccess:
    from analysis.extract_tables import extract_tables  # sqlglot: only when there is SQL

    first = extract_tables(sql, dialect or "postgres")
    if not first.error:
        return first
    for other in (None, "mysql", "sqlite"):
        retry = extract_tables(sql, other)
        if not retry.error:
            return retry
    return first
