"""The catalog context's rows in the monolith's database, read for backfill and reconcile.

This reads the monolith's *catalog* tables (the data being moved) and, to derive
``in_stock`` and ``rating``, its stock-level and review tables, with the same rules as the
monolith's product serializer. It is migration tooling running beside the monolith, not the
service: the service itself never reads another context's tables.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from extracted.sync.database import Database, check_identifier
from extracted.sync.spec import TableSpec


def select_sql(spec: TableSpec) -> str:
    """The query of a spec's rows, keyed ``id``, ordered, one key range per call."""
    if spec.derived:
        return f"{spec.source_sql} WHERE p.id > ? AND p.id < ? ORDER BY p.id LIMIT ?"
    columns = ", ".join(check_identifier(c, "column") for c in ("id", *spec.field_names))
    table = check_identifier(spec.source_table, "table")
    return f"SELECT {columns} FROM {table} WHERE id > ? AND id < ? ORDER BY id LIMIT ?"  # noqa: S608


def iter_batches(database: Database, spec: TableSpec, batch_size: int, start: int = 0,
                 end: int | None = None) -> Iterator[list[dict[str, Any]]]:
    """Rows of ``spec`` with ``start <= id < end`` in key order, ``batch_size`` at a time."""
    sql, after, stop = select_sql(spec), start - 1, end if end is not None else 2**62
    while True:
        rows = database.query(sql, [after, stop, batch_size])
        if not rows:
            return
        yield rows
        after = int(rows[-1]["id"])
