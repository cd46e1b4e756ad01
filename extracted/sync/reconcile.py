"""Compare the context's rows on both sides: counts and per-range digests, then the keys.

For every aggregate type: the source (monolith) rows are normalised and digested here, the
service digests its own (``/internal/checksums/``); only ranges whose count or digest
differ are fetched row by row and compared key by key. With ``versions`` on (the default
while the monolith owns the data), the last outbox sequence of every aggregate is also
compared with the last sequence the service applied: a row can look equal while a change is
still in flight, and this is what tells "caught up" from "equal by chance".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from extracted.sync.database import Database
from extracted.sync.outbox import SequenceTable
from extracted.sync.rows import (
    RangeSummary,
    diff_keys,
    differing_ranges,
    normalize_row,
    row_digest,
    summarize,
)
from extracted.sync.service import ServiceInternals
from extracted.sync.source import iter_batches
from extracted.sync.spec import CATALOG, ContextSpec, TableSpec


@dataclass
class TableReport:
    """One aggregate type's comparison."""

    aggregate_type: str
    source_count: int = 0
    service_count: int = 0
    ranges_compared: int = 0
    ranges_differing: int = 0
    missing: list[int] = field(default_factory=list)
    extra: list[int] = field(default_factory=list)
    different: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when both sides hold the same rows."""
        return not (self.missing or self.extra or self.different)


@dataclass
class ReconcileReport:
    """All tables, plus the per-aggregate change counts (versions)."""

    tables: list[TableReport] = field(default_factory=list)
    versions_behind: list[str] = field(default_factory=list)
    versions_ahead: list[str] = field(default_factory=list)
    versions_compared: int = 0

    @property
    def ok(self) -> bool:
        """True when nothing is missing, extra, different, behind or ahead."""
        return all(t.ok for t in self.tables) and not (self.versions_behind
                                                       or self.versions_ahead)

    def to_json(self) -> dict[str, Any]:
        """The report as JSON (``strangler reconcile --json``)."""
        return {
            "ok": self.ok,
            "tables": [dict(vars(t), ok=t.ok) for t in self.tables],
            "versions": {"compared": self.versions_compared, "behind": self.versions_behind,
                         "ahead": self.versions_ahead},
        }


def reconcile(database: Database, service: ServiceInternals, *, range_size: int = 1000,
              sequences: SequenceTable | None = None, batch_size: int = 2000,
              context: ContextSpec = CATALOG) -> ReconcileReport:
    """Compare every aggregate type of the context (and, given ``sequences``, the versions).

    ``sequences`` is the producer's sequence table (not the outbox, which may be pruned).
    """
    report = ReconcileReport()
    live: dict[str, set[int]] = {}
    for spec in context.specs:
        table, live[spec.aggregate_type] = _compare_table(database, service, spec, range_size,
                                                          batch_size)
        report.tables.append(table)
    if sequences is not None:
        _compare_versions(sequences, service, report, live)
    return report


def _source_digests(database: Database, spec: TableSpec, batch_size: int, start: int = 0,
                    end: int | None = None) -> dict[int, str]:
    out: dict[int, str] = {}
    for batch in iter_batches(database, spec, batch_size, start=start, end=end):
        for row in batch:
            key = int(row["id"])
            out[key] = row_digest(key, normalize_row(spec, row))
    return out


def _compare_table(database: Database, service: ServiceInternals, spec: TableSpec,
                   range_size: int, batch_size: int) -> tuple[TableReport, set[int]]:
    report = TableReport(spec.aggregate_type)
    digests = _source_digests(database, spec, batch_size)
    source = summarize(digests.items(), range_size)
    remote = service.checksums(spec.aggregate_type, range_size)
    target = {r["start"]: RangeSummary(r["start"], r["count"], r["digest"])
              for r in remote["ranges"]}
    report.source_count = sum(r.count for r in source.values())
    report.service_count = int(remote["count"])
    report.ranges_compared = len(set(source) | set(target))
    differing = differing_ranges(source, target)
    report.ranges_differing = len(differing)
    for start in differing:
        here = _source_digests(database, spec, batch_size, start, start + range_size)
        there = service.rows(spec.aggregate_type, start, start + range_size)["rows"]
        diff = diff_keys(here, {int(k): v["digest"] for k, v in there.items()})
        report.missing += diff.missing
        report.extra += diff.extra
        report.different += diff.different
    return report, set(digests)


def _compare_versions(sequences: SequenceTable, service: ServiceInternals,
                      report: ReconcileReport, live: dict[str, set[int]]) -> None:
    """Compare last sequences of the aggregates alive at the source.

    A row deleted before the backfill never reaches the service (its events are older than
    the backfill's mark), so it has no version there; the row comparison already proves
    it absent, so only live rows' versions are compared.
    """
    source = sequences.every()
    remote = {(v["aggregate_type"], str(v["aggregate_id"])): int(v["sequence"])
              for v in service.versions()["versions"]}
    alive = {(kind, str(key)) for kind, keys in live.items() for key in keys}
    keys = {k for k in (set(source) | set(remote)) & alive
            if max(source.get(k, 0), remote.get(k, 0))}
    report.versions_compared = len(keys)
    for key in sorted(keys):
        here, there = source.get(key, 0), remote.get(key, 0)
        if there < here:
            report.versions_behind.append(f"{key[0]}:{key[1]} {there}<{here}")
        elif there > here:
            report.versions_ahead.append(f"{key[0]}:{key[1]} {there}>{here}")
