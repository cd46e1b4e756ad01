"""Repair what reconcile found, as events: ``strangler reconcile --repair``.

Each differing key gets one action, decided from the reconcile report (pure):

* ``copy``: the row is missing in the service; ``update``: it differs there (edited or
  deleted behind the sync's back, or changed at the source by raw SQL), or its version is
  behind/ahead while the row looks equal; ``delete``: the service has a row the source has
  not; ``re-derive``: a derived fact (stock, rating) differs.

Nothing is written to the service directly. Each action is one event in the *producer's*
outbox, written in one transaction with the next sequence of its aggregate (above both
sides' last, so it also closes a gap) and the row's current state read after that sequence
row is locked: type ``repaired`` (full state) or ``repair_deleted``. The relay delivers it
in order with every other change, so a concurrent change of the same row is ordered
before or after the repair, never lost (contract 5, format 2).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from extracted.sync.database import Database, check_identifier
from extracted.sync.reconcile import ReconcileReport
from extracted.sync.rows import normalize_row
from extracted.sync.source import select_sql
from extracted.sync.spec import CATALOG, ContextSpec, TableSpec


@dataclass(frozen=True)
class RepairAction:
    """One key to repair: what to do and why."""

    aggregate_type: str
    key: int
    action: str  # copy, update, delete, re-derive
    reason: str

    def to_json(self) -> dict[str, Any]:
        """The action as JSON (``--json``)."""
        return {"aggregate_type": self.aggregate_type, "key": self.key, "action": self.action,
                "reason": self.reason}


def plan_repairs(report: ReconcileReport, derived: Iterable[str] = ()) -> list[RepairAction]:
    """The actions that make the service equal to the source, one per key.

    >>> from extracted.sync.reconcile import TableReport
    >>> r = ReconcileReport([TableReport("store.Brand", missing=[1], extra=[2], different=[3])])
    >>> [(a.key, a.action) for a in plan_repairs(r)]
    [(1, 'copy'), (2, 'delete'), (3, 'update')]
    """
    facts = set(derived)
    actions: dict[tuple[str, int], RepairAction] = {}
    for table in report.tables:
        kind = table.aggregate_type
        fact = kind in facts  # a derived fact is computed again, whatever the difference
        for keys, action, reason in ((table.missing, "copy", "missing in the service"),
                                     (table.extra, "delete", "not in the source"),
                                     (table.different, "update", "differs in the service")):
            for key in keys:
                actions[(kind, key)] = RepairAction(kind, key, "re-derive" if fact else action,
                                                    reason)
    for line in report.versions_behind + report.versions_ahead:
        ref, _, detail = line.partition(" ")
        kind, _, text = ref.rpartition(":")
        if text.isdigit() and (kind, int(text)) not in actions:
            actions[(kind, int(text))] = RepairAction(
                kind, int(text), "re-derive" if kind in facts else "update",
                f"version {detail} (row equal, history not)")
    return sorted(actions.values(), key=lambda a: (a.aggregate_type, a.key))


def apply_repairs(database: Database, actions: Iterable[RepairAction],
                  service_versions: dict[tuple[str, str], int], *,
                  context: ContextSpec = CATALOG) -> int:
    """Write one repair event per action into the producer's outbox; return how many."""
    written = 0
    for action in actions:
        spec = context.spec_for(action.aggregate_type)
        with database.transaction():
            floor = service_versions.get((action.aggregate_type, str(action.key)), 0)
            sequence = _next_sequence(database, context.sequence_table, action, floor)
            row = _current_row(database, spec, action.key)
            kind = "repair_deleted" if row is None else "repaired"
            payload = {} if row is None else normalize_row(spec, row)
            _insert_event(database, context.outbox_table, action, sequence, kind, payload)
        written += 1
    return written


def _next_sequence(database: Database, table: str, action: RepairAction, floor: int) -> int:
    """Lock the aggregate's counter row, move it above both sides' last; return it."""
    table = check_identifier(table, "sequence table")
    ref = [action.aggregate_type, str(action.key)]
    rows = database.query(
        f"INSERT INTO {table} (aggregate_type, aggregate_id, last) VALUES (?, ?, 1) "  # noqa: S608
        f"ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE SET last = {table}.last + 1 "
        "RETURNING last", ref)
    sequence = int(rows[0]["last"])
    if sequence <= floor:
        sequence = floor + 1
        database.query(f"UPDATE {table} SET last = ? WHERE aggregate_type = ? "  # noqa: S608
                       "AND aggregate_id = ?", [sequence, *ref])
    return sequence


def _current_row(database: Database, spec: TableSpec, key: int) -> dict[str, Any] | None:
    rows = database.query(select_sql(spec), [key - 1, key + 1, 1])
    return rows[0] if rows else None


def _insert_event(database: Database, table: str, action: RepairAction, sequence: int,
                  kind: str, payload: dict[str, Any]) -> None:
    table = check_identifier(table, "outbox table")
    now = datetime.now(UTC)
    database.query(
        f"INSERT INTO {table} (event_id, aggregate_type, aggregate_id, sequence, "  # noqa: S608
        "event_type, payload, occurred_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [str(uuid.uuid4()), action.aggregate_type, str(action.key), sequence, kind,
         json.dumps(payload), now if database.vendor == "postgresql"
         else now.strftime("%Y-%m-%d %H:%M:%S.%f")])
