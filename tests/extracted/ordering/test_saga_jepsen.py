"""The checkout saga under faults, bounded: nothing lost, no double charge or reservation.

``saga_jepsen.check`` reads both databases with its own SQL. Faults: SIGKILL of either
relay, of the ordering service and of the monolith (each restarted) while shoppers check
out, pay and cancel. 10 s of faults per database, longer until 14 orders were placed
(40 s at most).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from saga_jepsen import SagaCluster, check, rows, saga_run

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("databases", ["sqlite", "postgresql"], indirect=True)
def test_no_lost_order_no_double_reservation_no_charge_without_order_under_faults(
        databases: Any, tmp_path: Path) -> None:
    pg = databases.vendor == "postgresql"
    cluster = SagaCluster(tmp_path, databases("shop") if pg else "", databases("ordering"))
    try:
        verdict, faults, history, base = saga_run(cluster, seconds=10, seed=17,
                                                  min_orders=14, max_seconds=40)
    finally:
        cluster.stop()
    report = dict(verdict.summary(), faults=vars(faults), calls=dict(history.calls))
    print(json.dumps(report))  # noqa: T201 - the figures the issue asks for, in the log
    assert verdict.ok, json.dumps(report, indent=1)
    assert faults.relay_kills + faults.service_kills + faults.monolith_kills >= 5
    assert len(history.orders) >= 10
    assert verdict.sagas["paid"] >= 3
    # and the checker is not blind: a paid order turned back to pending is a charge
    # without an order, and its reservations are seen as wrong
    [(paid,)] = rows(cluster.service.database_url, "SELECT MIN(id) FROM ordering_order "
                                                   "WHERE id > ? AND status = 'paid'",
                     (base.last_order,))
    rows(cluster.service.database_url, "UPDATE ordering_order SET status = 'pending' "
                                       "WHERE id = ?", (paid,))
    again = check(cluster.monolith.source_db, cluster.service.database_url, history, base)
    assert len(again.charge_without_order) == 1, again.summary()
    assert again.double_reservation, again.summary()
    assert len(again.copy) == 1, again.summary()  # the monolith's copy still says paid
