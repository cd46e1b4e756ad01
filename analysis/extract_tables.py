"""Tables a SQL statement reads, writes and locks, with sqlglot.

CTE names are not tables; ``UPDATE ... FROM``, ``DELETE ... USING``, MySQL multi-table
``UPDATE a JOIN b`` / ``DELETE a FROM a JOIN b``, ``MERGE``, ``INSERT ... SELECT`` and
data-modifying CTEs write their target and read the rest; ``SELECT ... FOR UPDATE``
reads and *locks*. DDL (``CREATE``/``ALTER``/``DROP``/``TRUNCATE``) writes its table.
DB-API placeholders (``%s``, ``%(name)s``) become ``?`` before parsing.

>>> a = extract_tables("UPDATE a SET x = b.y FROM b WHERE a.id = b.id", "postgres")
>>> sorted(a.reads), sorted(a.writes)
(['b'], ['a'])
"""

from __future__ import annotations

import logging
import re

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from analysis.facts import TableAccess

# sqlglot logs "unsupported syntax, falling back to Command" for SET and friends; the
# statement is still handled (no tables), so the warning is noise on the user's terminal.
logging.getLogger("sqlglot").setLevel(logging.ERROR)

_PYFORMAT = re.compile(r"%\((\w+)\)s|%s")
_DDL = (exp.Create, exp.Drop, exp.Alter, exp.TruncateTable)


def normalize_placeholders(sql: str) -> str:
    """``%s`` and ``%(name)s`` placeholders become ``?``; ``%%`` becomes ``%``.

    >>> normalize_placeholders("SELECT * FROM t WHERE a = %s AND b = %(b)s AND c LIKE 'x%%'")
    "SELECT * FROM t WHERE a = ? AND b = ? AND c LIKE 'x%'"
    """
    if "%" not in sql:
        return sql
    return _PYFORMAT.sub("?", sql).replace("%%", "%")


def extract_tables(sql: str, dialect: str | None = None) -> TableAccess:
    """Read, written and locked tables of every statement in ``sql`` (lower-cased names).

    A statement sqlglot cannot parse yields ``TableAccess.error`` with the parser's reason.
    """
    try:
        trees = [t for t in sqlglot.parse(normalize_placeholders(sql), read=dialect) if t]
    except (ParseError, TokenError) as exc:
        return TableAccess(error=str(exc).splitlines()[0][:200])
    except (ValueError, RecursionError) as exc:  # unknown dialect is checked upstream
        return TableAccess(error=f"{type(exc).__name__}: {exc}"[:200])
    reads: set[str] = set()
    writes: set[str] = set()
    locks: set[str] = set()
    for tree in trees:
        r, w, lk = _access(tree)
        reads |= r
        writes |= w
        locks |= lk
    return TableAccess(frozenset(reads), frozenset(writes), frozenset(locks))


def _name(table: exp.Table) -> str | None:
    if not isinstance(table.this, exp.Identifier):
        return None  # table functions, e.g. generate_series(...)
    return table.name.lower() or None


def _access(tree: exp.Expr) -> tuple[set[str], set[str], set[str]]:
    ctes = {c.alias_or_name.lower() for c in tree.find_all(exp.CTE)}
    targets: set[int] = set()
    writes: set[str] = set()
    for node in tree.walk():
        for table in _write_targets(node):
            targets.add(id(table))
            if (name := _name(table)) and name not in ctes:
                writes.add(name)
    reads: set[str] = set()
    locks: set[str] = set()
    for table in tree.find_all(exp.Table):
        name = _name(table)
        if name is None or name in ctes or id(table) in targets:
            continue
        reads.add(name)
        select = table.find_ancestor(exp.Select)
        if select is not None and select.args.get("locks"):
            locks.add(name)
    return reads, writes, locks


def _table_of(node: exp.Expression | None) -> exp.Table | None:
    if isinstance(node, exp.Schema):
        node = node.this
    return node if isinstance(node, exp.Table) else None


def _write_targets(node: exp.Expr) -> list[exp.Table]:
    if isinstance(node, exp.Insert | exp.Merge):
        return [t] if (t := _table_of(node.this)) else []
    if isinstance(node, exp.Update):
        return _update_targets(node)
    if isinstance(node, exp.Delete):
        return _delete_targets(node)
    if isinstance(node, exp.TruncateTable):
        return [t for t in node.expressions if isinstance(t, exp.Table)]
    if isinstance(node, exp.Create) and isinstance(node.this, exp.Index):
        return [t] if (t := _table_of(node.this.args.get("table"))) else []
    if isinstance(node, _DDL) and str(node.args.get("kind", "TABLE")).upper() == "TABLE":
        return [t] if (t := _table_of(node.this)) else []
    return []


def _delete_targets(node: exp.Delete) -> list[exp.Table]:
    this = _table_of(node.this)
    listed = [t for t in node.args.get("tables") or [] if isinstance(t, exp.Table)]
    if not listed and this is not None and this.args.get("joins") and node.args.get("using"):
        # MySQL ``DELETE FROM a, b USING a JOIN b ...``: the FROM list is written.
        listed = [this, *(j.this for j in this.args["joins"] if isinstance(j.this, exp.Table))]
    if not listed:
        return [this] if this else []
    names = {t.alias_or_name.lower() for t in listed} | {t.name.lower() for t in listed}
    same = [t for t in node.find_all(exp.Table)
            if t.alias_or_name.lower() in names and t.find_ancestor(exp.Subquery) is None]
    return [*listed, *same]


def _update_targets(node: exp.Update) -> list[exp.Table]:
    this = _table_of(node.this)
    joins = list(this.args.get("joins") or []) if this else []
    if not joins or this is None:
        return [this] if this else []
    # MySQL multi-table UPDATE: the tables named by the SET columns are written.
    by_alias = {this.alias_or_name.lower(): this}
    by_alias.update({j.this.alias_or_name.lower(): j.this for j in joins
                     if isinstance(j.this, exp.Table)})
    written = [by_alias[c.table.lower()] for eq in node.expressions
               for c in [eq.this] if isinstance(c, exp.Column) and c.table.lower() in by_alias]
    return written or [this]
