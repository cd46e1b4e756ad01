"""Issue 13's acceptance run, bounded: writes under faults, a cutover and undo, then checked.

The checker (``jepsen.check``) reads both databases with its own SQL, not through the sync
code. Faults, in a random but seeded order: SIGKILL of either relay, of the service and of
the monolith (each restarted), a backfill re-run while the monolith owns the catalog, and a
cutover then an undo while the writers keep writing. About 25 s of faults per database; the
long soak with 20 cutover/undo cycles is ``python -m bench.sync_soak``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jepsen import Cluster, jepsen_run

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("databases", ["sqlite", "postgresql"], indirect=True)
def test_nothing_lost_duplicated_or_different_under_faults_and_a_cutover(
        databases: Any, tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, databases, databases.vendor == "postgresql")
    try:
        verdict, faults, history = jepsen_run(cluster, seconds=25, seed=13, cycles=1)
    finally:
        cluster.stop()
    report = dict(verdict.summary(), faults=vars(faults), acknowledged=history.acknowledged,
                  unknown=history.unknown, refused=history.refused,
                  longest_refusal=round(history.longest_refusal, 3))
    print(json.dumps(report))  # noqa: T201 - the figures the issue asks for, in the log
    assert verdict.ok, json.dumps(report, indent=1)
    assert faults.cutovers >= 1
    assert faults.undos >= 1
    assert faults.backfills >= 1
    assert faults.relay_kills + faults.service_kills + faults.monolith_kills >= 5
    assert history.acknowledged > 100
    assert verdict.events_checked > 100
