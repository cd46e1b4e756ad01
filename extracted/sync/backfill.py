"""The initial copy: existing rows to the service in batches, handed over to the stream.

No gap, no double apply, whenever it runs (first time, re-run, service behind or lost):

1. Read the outbox head ``H``, then wait until every write transaction running at that
   moment has ended (PostgreSQL: the snapshot's xmin passes the xmax seen with ``H``;
   SQLite: nothing to wait for). Every event at or below H is then committed or gone.
2. Copy each table in key order, ``batch_size`` rows at a time. Each batch is read in one
   snapshot together with each key's last sequence from the producer's *sequence table*
   (never pruned, unlike the outbox), so a row copied with sequence ``s`` contains exactly
   the changes 1..s of its aggregate. The same snapshot names the keys of the batch's key
   range that the producer changed but no longer has: they are sent as deletions with
   their sequence, so the service drops them and keeps a tombstone, even when it never got
   their delete event. Rows the service has in that range and the producer never had
   (no sequence at all on either side) are dropped too.
3. Move the service's stream position to ``H`` (forward only). Every event at or below H is
   contained in the copy (a sequence <= the copied one, or a tombstone), so skipping them is
   safe; later ones are stale if the copy already has them, applied otherwise.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from extracted.sync.database import Database
from extracted.sync.outbox import OutboxTable, SequenceTable
from extracted.sync.rows import normalize_row
from extracted.sync.service import ServiceInternals
from extracted.sync.source import iter_batches
from extracted.sync.spec import CATALOG, ContextSpec, TableSpec


@dataclass
class BackfillReport:
    """What the backfill copied, per aggregate type, and how long it took."""

    high_water: int = 0
    copied: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    deleted: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    waited: float = 0.0
    position: int = 0

    @property
    def total_copied(self) -> int:
        """Rows copied over all aggregate types."""
        return sum(self.copied.values())


def backfill(database: Database, outbox: OutboxTable, service: ServiceInternals, *,
             stream: str = "monolith", batch_size: int = 500, wait_timeout: float = 600.0,
             context: ContextSpec = CATALOG,
             on_batch: Callable[[str, int], None] | None = None) -> BackfillReport:
    """Copy the context to the service and set the stream position; see the module doc."""
    started = time.monotonic()
    report = BackfillReport(high_water=outbox.head())
    report.waited = database.wait_for_writers(timeout=wait_timeout)
    sequences = SequenceTable(database, context.sequence_table)
    for spec in context.specs:
        _copy_table(database, sequences, service, spec, batch_size, report, on_batch)
    report.position = service.set_position(stream, report.high_water)
    report.seconds = round(time.monotonic() - started, 3)
    return report


def _copy_table(database: Database, sequences: SequenceTable, service: ServiceInternals,
                spec: TableSpec, batch_size: int, report: BackfillReport,
                on_batch: Callable[[str, int], None] | None) -> None:
    kind = spec.aggregate_type
    for counter in (report.copied, report.skipped, report.deleted):
        counter.setdefault(kind, 0)
    start = 0
    while True:
        with database.snapshot():
            batch = next(iter_batches(database, spec, batch_size, start=start), [])
            end = int(batch[-1]["id"]) if len(batch) == batch_size else None
            known = sequences.in_range(kind, start, end)
        alive = {str(row["id"]) for row in batch}
        rows = [{"id": int(row["id"]), "sequence": known.get(str(row["id"]), 0),
                 "fields": normalize_row(spec, row)} for row in batch]
        gone = [{"id": int(key), "sequence": seq} for key, seq in sorted(known.items())
                if key not in alive]
        result = service.snapshot(kind, rows, key_range=(start, end), deleted=gone)
        report.copied[kind] += result["copied"]
        report.skipped[kind] += result["skipped"]
        report.deleted[kind] += result.get("deleted", 0)
        if on_batch is not None:
            on_batch(kind, len(rows))
        if end is None:
            return
        start = end + 1
