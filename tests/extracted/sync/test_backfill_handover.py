"""The backfill hands over to the stream with nothing lost, whenever it is (re-)run.

Reproduces issue 13's critical findings first: a backfill re-run while the service is behind
must not skip pending deletes (nor stop the stream on a 409), and a backfill after the
outbox was pruned and the service's database lost must take each aggregate's sequence
from the producer's sequence table, not from what is left of the outbox.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import STRANGLER, SYNC_TOKEN, CatalogServer, base_env
from test_sync_processes import (  # noqa: F401 - sync_pair is a fixture
    BOTH,
    SyncPair,
    backfill,
    reconcile,
    relay_once,
    sync_pair,
)

from extracted.sync.database import Database

pytestmark = pytest.mark.slow


def _service_ids(service_url: str, table: str) -> set[int]:
    target = Database(service_url)
    try:
        return {int(r["id"]) for r in target.query(f"SELECT id FROM {table}")}  # noqa: S608
    finally:
        target.close()


@BOTH
def test_backfill_rerun_while_the_service_is_behind_loses_no_delete(
        sync_pair: Callable[..., SyncPair]) -> None:  # noqa: F811 - the imported fixture
    # given a service in step with the shop
    pair = sync_pair(30)
    shop, server = pair.shop, pair.server
    backfill(pair.shop_url, server)
    assert relay_once(pair.shop_url, server)[0] == 0
    # when the service falls behind: a delete and an update it has not got
    products = sorted(shop.live["store.Product"])
    shop._delete_product(products[0])
    shop.change("store.Product", products[1], shop._fields("store.Product", products[1]))
    # and the backfill is re-run, while another product is deleted during its wait
    late = products[2]
    argv = [*STRANGLER, "backfill", "--source-db", pair.shop_url, "--service-url", server.url,
            "--token", SYNC_TOKEN, "--batch-size", "10", "--hole-grace", "1.5", "--json"]
    running = subprocess.Popen(argv, env=base_env(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    time.sleep(0.6)
    shop._delete_product(late)
    out, err = running.communicate(timeout=120)
    assert running.returncode == 0, err
    assert json.loads(out)["total_copied"] > 0
    # then the stream carries on (no 409), and both deletes reached the service
    code, status = relay_once(pair.shop_url, server)
    assert (code, status["lag_events"], status["last_error"]) == (0, 0, ""), status
    alive = _service_ids(pair.service_url, "catalog_product")
    assert products[0] not in alive
    assert late not in alive
    code, result = reconcile(pair.shop_url, server)
    assert code == 0, json.dumps(result, indent=1)[:3000]
    # and a third backfill leaves it so
    backfill(pair.shop_url, server)
    assert relay_once(pair.shop_url, server)[0] == 0
    assert reconcile(pair.shop_url, server)[0] == 0


@BOTH
def test_lost_service_database_after_a_prune_recovers(
        sync_pair: Callable[..., SyncPair], databases: Any, tmp_path: Path) -> None:  # noqa: F811 - the imported fixture
    # given a service in step, and an outbox pruned up to what it acknowledged
    pair = sync_pair(20)
    shop, server = pair.shop, pair.server
    for _ in range(40):
        shop.random_change()
    backfill(pair.shop_url, server)
    code, status = relay_once(pair.shop_url, server)
    assert code == 0
    pruned = subprocess.run(
        [*STRANGLER, "outbox", "prune", "--source-db", pair.shop_url, "--target",
         f"{server.url}/internal/events/#monolith", "--token", SYNC_TOKEN, "--keep", "0"],
        env=base_env(), capture_output=True, text=True, timeout=60, check=False)
    assert pruned.returncode == 0, pruned.stderr
    assert pruned.stdout.startswith("deleted ")
    left = shop.execute("SELECT count(*) FROM outbox_outboxevent WHERE id <= ?",
                        (status["position"],))
    assert left[0][0] == 0
    # when the service's database is lost and re-created, then backfilled
    server.stop()
    (tmp_path / "fresh").mkdir()
    fresh = CatalogServer(databases("catalog2"), tmp_path / "fresh")
    try:
        fresh.migrate()
        fresh.start()
        backfill(pair.shop_url, fresh)
        assert reconcile(pair.shop_url, fresh)[0] == 0
        # then the next changes flow (no 409: the copy carries the real sequences)
        for key in sorted(shop.live["store.Product"])[:3]:
            shop.change("store.Product", key, shop._fields("store.Product", key))
        shop.stock(sorted(shop.live["store.Product"])[0], 2)
        code, status = relay_once(pair.shop_url, fresh)
        assert (code, status["lag_events"], status["last_error"]) == (0, 0, ""), status
        code, result = reconcile(pair.shop_url, fresh)
        assert code == 0, json.dumps(result, indent=1)[:3000]
    finally:
        fresh.stop()


def test_backfill_waits_for_nothing_on_a_quiet_database(
        sync_pair: Callable[..., SyncPair]) -> None:  # noqa: F811 - the imported fixture
    # the hand-over horizon comes from the database, not from a timer: no open write
    # transaction means no wait, whatever --hole-grace says
    pair = sync_pair(5)
    started = time.monotonic()
    done = subprocess.run(
        [*STRANGLER, "backfill", "--source-db", pair.shop_url, "--service-url",
         pair.server.url, "--token", SYNC_TOKEN, "--hole-grace", "30", "--json"],
        env=base_env(), capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 20


