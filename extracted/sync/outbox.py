"""Reading a producer's outbox table (contract 5) through a ``Database``.

The table has the columns ``id`` (the position), ``event_id``, ``aggregate_type``,
``aggregate_id``, ``sequence``, ``event_type``, ``payload`` (JSON), ``occurred_at`` and, from
format 3, ``request_id``: the monolith's ``outbox_outboxevent`` and the service's
``catalog_outboxevent`` both do. A table without ``request_id`` (an outbox not yet migrated)
is read as well: its events carry an empty request id.
"""

from __future__ import annotations

import json
from typing import Any

from extracted.sync.database import Database, check_identifier
from extracted.sync.errors import BadEvent, DatabaseUnavailable
from extracted.sync.events import FORMAT, OutboxEvent, event_from_json, poison_event

COLUMNS = "id, event_id, aggregate_type, aggregate_id, sequence, event_type, payload, occurred_at"
FORMAT_3_COLUMNS = COLUMNS + ", request_id"


class OutboxTable:
    """The outbox of one producer: fetch events after a position, and the head."""

    def __init__(self, database: Database, table: str) -> None:
        self.database = database
        self.table = check_identifier(table, "outbox table")
        self._columns: str | None = None

    def columns(self) -> str:
        """The columns to read: with ``request_id`` when the table has it (asked once)."""
        if self._columns is None:
            try:
                self.database.query(f"SELECT request_id FROM {self.table} WHERE 1 = 0")  # noqa: S608
                self._columns = FORMAT_3_COLUMNS
            except DatabaseUnavailable:  # "no such column": a table before format 3
                self._columns = COLUMNS
        return self._columns

    def fetch(self, after: int, limit: int, upto: int | None = None) -> list[OutboxEvent]:
        """Events with position > ``after`` (and <= ``upto``), in position order."""
        sql = f"SELECT {self.columns()} FROM {self.table} WHERE id > ?"  # noqa: S608
        params: list[Any] = [after]
        if upto is not None:
            sql += " AND id <= ?"
            params.append(upto)
        rows = self.database.query(sql + " ORDER BY id LIMIT ?", [*params, limit])
        return [_readable(row, self.table) for row in rows]

    def write_horizon(self) -> tuple[int, int] | None:
        """The database's write horizon (``Database.write_horizon``), for holes."""
        return self.database.write_horizon()

    def head(self) -> int:
        """The highest position written so far (0 for an empty outbox)."""
        rows = self.database.query(f"SELECT max(id) AS head FROM {self.table}")  # noqa: S608
        return int(rows[0]["head"] or 0)

    def count_after(self, position: int) -> int:
        """How many events sit above ``position`` (the relay's lag in events)."""
        rows = self.database.query(
            f"SELECT count(*) AS n FROM {self.table} WHERE id > ?", [position]  # noqa: S608
        )
        return int(rows[0]["n"])

    def max_sequences(self, aggregate_type: str, keys: list[str]) -> dict[str, int]:
        """The last sequence per aggregate id (0 when it has no event) for ``keys``."""
        out = dict.fromkeys(keys, 0)
        for start in range(0, len(keys), 500):
            chunk = keys[start:start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self.database.query(
                f"SELECT aggregate_id, max(sequence) AS seq FROM {self.table} "  # noqa: S608
                f"WHERE aggregate_type = ? AND aggregate_id IN ({marks}) GROUP BY aggregate_id",
                [aggregate_type, *chunk],
            )
            out.update({str(r["aggregate_id"]): int(r["seq"]) for r in rows})
        return out

    def all_max_sequences(self) -> dict[tuple[str, str], int]:
        """The last sequence of every aggregate that has events."""
        rows = self.database.query(
            f"SELECT aggregate_type, aggregate_id, max(sequence) AS seq "  # noqa: S608
            f"FROM {self.table} GROUP BY aggregate_type, aggregate_id"
        )
        return {(r["aggregate_type"], str(r["aggregate_id"])): int(r["seq"]) for r in rows}


def _readable(row: dict[str, Any], table: str) -> OutboxEvent:
    """The row as an event, or as a poison event naming what is wrong with it."""
    try:
        return row_to_event(row, table)
    except BadEvent as exc:
        data = dict(row, position=row["id"], id=row.get("event_id"), type=row.get("event_type"))
        return poison_event(data, str(exc))


def row_to_event(row: dict[str, Any], table: str) -> OutboxEvent:
    """One outbox row as an event; a broken row names the table and its id."""
    payload = row["payload"]
    if isinstance(payload, str):
        try:
            payload = json.loads(payload)
        except json.JSONDecodeError as exc:
            raise BadEvent(f"{table} id {row['id']}: payload is not JSON ({exc.msg})") from None
    data = dict(row, position=row["id"], id=row["event_id"], type=row["event_type"],
                payload=payload, format=FORMAT, request_id=row.get("request_id") or None)
    return event_from_json(data, f"{table} id {row['id']}")


class SequenceTable:
    """The producer's last sequence per aggregate (``outbox_aggregatesequence``).

    The truth about sequences: the outbox may be pruned, this table never is, and it is
    written in the same transaction as each event. Columns ``aggregate_type``,
    ``aggregate_id`` (text) and ``last``.
    """

    def __init__(self, database: Database, table: str = "outbox_aggregatesequence",
                 column: str = "last") -> None:
        self.database = database
        self.table = check_identifier(table, "sequence table")
        self.column = check_identifier(column, "sequence column")

    def in_range(self, aggregate_type: str, start: int, end: int | None) -> dict[str, int]:
        """``aggregate_id -> last`` of the aggregates with ``start <= int(id) <= end``."""
        sql = (f"SELECT aggregate_id, {self.column} AS seq FROM {self.table} "  # noqa: S608
               "WHERE aggregate_type = ? AND CAST(aggregate_id AS BIGINT) >= ?")
        params: list[Any] = [aggregate_type, start]
        if end is not None:
            sql += " AND CAST(aggregate_id AS BIGINT) <= ?"
            params.append(end)
        return {str(r["aggregate_id"]): int(r["seq"]) for r in self.database.query(sql, params)}

    def every(self, types: list[str] | None = None) -> dict[tuple[str, str], int]:
        """The last sequence of every aggregate the producer ever changed (of ``types``)."""
        sql = f"SELECT aggregate_type, aggregate_id, {self.column} AS seq FROM {self.table}"  # noqa: S608
        if types:
            sql += f" WHERE aggregate_type IN ({','.join('?' * len(types))})"
        rows = self.database.query(sql, types or [])
        return {(r["aggregate_type"], str(r["aggregate_id"])): int(r["seq"]) for r in rows}
