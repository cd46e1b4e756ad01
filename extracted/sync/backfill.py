"""The initial copy: existing rows to the service in batches, handed over to the stream.

No gap, no double apply:

1. Read the outbox head ``H`` (the highest position written so far), then wait
   ``hole_grace`` seconds so every transaction that took a position <= H has committed
   (the same assumption the relay's cursor makes, see ``cursor``).
2. Copy each table in key order, ``batch_size`` rows at a time. Each batch is read in one
   snapshot together with the last outbox ``sequence`` of every row in it, so a row copied
   with sequence ``s`` already contains exactly the changes 1..s of that aggregate.
3. Move the service's stream position to ``H`` (forward only). The relay then delivers
   every event after H. An event the copy already contains has a sequence <= ``s`` and
   is skipped as stale by the service; a newer one applies. Deletes leave a tombstone
   version, so a late copy of a deleted row cannot resurrect it.

The copy may run while the monolith takes writes, and before or while the relay runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from extracted.sync.database import Database
from extracted.sync.outbox import OutboxTable
from extracted.sync.rows import normalize_row
from extracted.sync.service import ServiceInternals
from extracted.sync.source import iter_batches
from extracted.sync.spec import CATALOG_TABLES, SIGNAL_SPECS, TableSpec


@dataclass
class BackfillReport:
    """What the backfill copied, per aggregate type, and how long it took."""

    high_water: int = 0
    copied: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    position: int = 0

    @property
    def total_copied(self) -> int:
        """Rows copied over all aggregate types."""
        return sum(self.copied.values())


def backfill(database: Database, outbox: OutboxTable, service: ServiceInternals, *,
             stream: str = "monolith", batch_size: int = 500, hole_grace: float = 2.0,
             on_batch: Callable[[str, int], None] | None = None,
             sleep: Callable[[float], None] = time.sleep) -> BackfillReport:
    """Copy the catalog to the service and set the stream position; see the module doc."""
    started = time.monotonic()
    report = BackfillReport(high_water=outbox.head())
    if hole_grace > 0:
        sleep(hole_grace)
    for spec in CATALOG_TABLES + SIGNAL_SPECS:
        _copy_table(database, outbox, service, spec, batch_size, report, on_batch)
    report.position = service.set_position(stream, report.high_water)
    report.seconds = round(time.monotonic() - started, 3)
    return report


def _copy_table(database: Database, outbox: OutboxTable, service: ServiceInternals,
                spec: TableSpec, batch_size: int, report: BackfillReport,
                on_batch: Callable[[str, int], None] | None) -> None:
    report.copied.setdefault(spec.aggregate_type, 0)
    report.skipped.setdefault(spec.aggregate_type, 0)
    after = 0
    while True:
        with database.snapshot():
            batch = next(iter_batches(database, spec, batch_size, start=after), [])
            keys = [str(row["id"]) for row in batch]
            sequences = outbox.max_sequences(spec.aggregate_type, keys) if keys else {}
        if not batch:
            return
        rows = [{"id": int(row["id"]), "sequence": sequences[str(row["id"])],
                 "fields": normalize_row(spec, row)} for row in batch]
        result = service.snapshot(spec.aggregate_type, rows)
        report.copied[spec.aggregate_type] += result["copied"]
        report.skipped[spec.aggregate_type] += result["skipped"]
        if on_batch is not None:
            on_batch(spec.aggregate_type, len(rows))
        after = int(batch[-1]["id"]) + 1
