"""Relay, backfill and reconcile as real processes, against a fake producer.

The producer here is ``fake_shop.FakeShop`` (catalog tables + outbox, written exactly as
contract 5 says); the same guarantees against the real monolith are in
``test_nothing_lost_monolith.py``. Runs on SQLite, and on PostgreSQL when
STRANGLER_TEST_PG_URL is set.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import STRANGLER, SYNC_TOKEN, CatalogServer, Process, base_env, relay_argv
from fake_shop import FakeShop

from extracted.sync.database import Database

pytestmark = pytest.mark.slow
BOTH = pytest.mark.parametrize("databases", ["sqlite", "postgresql"], indirect=True)


def run(argv: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=base_env(), capture_output=True, text=True,
                          timeout=timeout, check=False)


def backfill(shop_url: str, server: CatalogServer) -> dict[str, Any]:
    done = run([*STRANGLER, "backfill", "--source-db", shop_url, "--service-url", server.url,
                "--token", SYNC_TOKEN, "--batch-size", "50", "--hole-grace", "0.5", "--json"])
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def reconcile(shop_url: str, server: CatalogServer) -> tuple[int, dict[str, Any]]:
    done = run([*STRANGLER, "reconcile", "--source-db", shop_url, "--service-url", server.url,
                "--token", SYNC_TOKEN, "--range-size", "25", "--json"])
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, json.loads(done.stdout)


def relay_once(shop_url: str, server: CatalogServer) -> tuple[int, dict[str, Any]]:
    done = run(relay_argv(shop_url, f"{server.url}/internal/events/", "outbox_outboxevent",
                          "monolith", "--once", "--json"))
    return done.returncode, json.loads(done.stdout.strip().splitlines()[-1])


class Writer(threading.Thread):
    """Writes random catalog changes until stopped (bounded in count)."""

    def __init__(self, shop: FakeShop, limit: int = 3000) -> None:
        super().__init__(daemon=True)
        self.shop, self.limit, self.count = shop, limit, 0
        self.halt = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.halt.is_set() and self.count < self.limit:
                self.shop.random_change()
                self.count += 1
                time.sleep(0.002)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc


@dataclass(frozen=True)
class SyncPair:
    """A fake shop (producer) and the catalog service (consumer), each on its own database."""

    shop_url: str
    service_url: str
    shop: FakeShop
    server: CatalogServer


@pytest.fixture
def sync_pair(databases: Any, tmp_path: Path) -> Iterator[Callable[..., SyncPair]]:
    """Factory: a populated shop and a migrated, running service; both closed at teardown."""
    closers: list[Callable[[], None]] = []

    def make(rows: int, with_events: bool = True) -> SyncPair:
        shop_url, service_url = databases("shop"), databases("catalog")
        shop = FakeShop(shop_url)
        closers.append(shop.close)
        shop.create_schema()
        shop.populate(rows, with_events=with_events)
        server = CatalogServer(service_url, tmp_path)
        server.migrate()
        closers.append(server.stop)
        server.start()
        return SyncPair(shop_url, service_url, shop, server)

    try:
        yield make
    finally:
        for close in reversed(closers):
            close()


@BOTH
def test_nothing_lost_while_relay_is_killed_and_service_restarted(
    sync_pair: Callable[..., SyncPair], tmp_path: Path
) -> None:
    # given a shop with rows from before the outbox existed, and some history
    pair = sync_pair(40, with_events=False)
    shop_url, service_url, shop, server = (pair.shop_url, pair.service_url, pair.shop,
                                           pair.server)
    for _ in range(60):
        shop.random_change()
    writer = Writer(shop)
    relay = Process(relay_argv(shop_url, f"{server.url}/internal/events/"), base_env(),
                    tmp_path / "relay.log")
    try:
        # when the workload writes, and the relay starts (from position 0) while the
        # backfill copies: both apply the same aggregates concurrently
        writer.start()
        relay.start()
        report = backfill(shop_url, server)
        assert report["total_copied"] > 100
        # and the relay is killed and restarted, and the service stopped and started
        for round_ in range(4):
            if round_:
                relay.start()
            time.sleep(0.8)
            if round_ == 2:
                server.stop()
                time.sleep(0.8)
                server.start()
                time.sleep(0.5)
            relay.kill(signal.SIGKILL)
        writer.halt.set()
        writer.join(timeout=30)
        assert writer.error is None
        # then, after quiescence, one last relay run catches up
        code, status = relay_once(shop_url, server)
        assert (code, status["lag_events"]) == (0, 0), status
        # and reconcile finds the rows and every aggregate's change count equal
        code, result = reconcile(shop_url, server)
        assert code == 0, json.dumps(result, indent=1)[:3000]
        # and every event after the backfill's mark was processed exactly once (the relay
        # started from 0, so older ones may have been processed too: as applied or stale)
        source, target = Database(shop_url), Database(service_url)
        every = {r["event_id"] for r in source.query("SELECT event_id FROM outbox_outboxevent")}
        after = {r["event_id"] for r in source.query(
            "SELECT event_id FROM outbox_outboxevent WHERE id > ?", [report["high_water"]])}
        processed = [r["event_id"] for r in target.query(
            "SELECT event_id FROM catalog_processedevent")]
        assert len(after) > 200
        assert after <= set(processed) <= every
        assert len(processed) == len(set(processed))
        twice = target.query(
            "SELECT count(*) AS n FROM (SELECT aggregate_type, aggregate_id, sequence FROM "
            "catalog_processedevent WHERE outcome = 'applied' GROUP BY aggregate_type, "
            "aggregate_id, sequence HAVING count(*) > 1) AS doubles")
        assert twice[0]["n"] == 0
        assert writer.count > 200
        source.close()
        target.close()
    finally:
        writer.halt.set()
        relay.kill()


def test_reconcile_names_missing_extra_and_different_keys(
        sync_pair: Callable[..., SyncPair]) -> None:
    # given a shop copied to the service
    pair = sync_pair(30)
    shop_url, service_url, shop, server = (pair.shop_url, pair.service_url, pair.shop,
                                           pair.server)
    backfill(shop_url, server)
    assert reconcile(shop_url, server)[0] == 0
    # (and `relay --check` measures the lag of three new changes without delivering)
    for _ in range(3):
        shop.create("store.Brand")
    check = run(relay_argv(shop_url, f"{server.url}/internal/events/",
                           "outbox_outboxevent", "monolith", "--check", "--json"))
    lag = json.loads(check.stdout)
    assert (check.returncode, lag["lag_events"], lag["delivered"]) == (1, 3, 0)
    assert lag["lag_seconds"] >= 0
    assert reconcile(shop_url, server)[0] == 1  # the new brands are missing
    assert relay_once(shop_url, server)[0] == 0
    # when the copy is damaged behind the sync's back
    target = Database(service_url)
    target.query("DELETE FROM catalog_product WHERE id = 7")
    target.query("UPDATE catalog_brand SET name = 'tampered' WHERE id = 2")
    target.query("INSERT INTO catalog_tag (id, name, slug) VALUES (99, 'x', 'x')")
    target.close()
    # then reconcile exits 1 and names the keys
    code, result = reconcile(shop_url, server)
    tables = {t["aggregate_type"]: t for t in result["tables"]}
    assert code == 1
    assert result["ok"] is False
    assert tables["store.Product"]["missing"] == [7]
    assert tables["store.Brand"]["different"] == [2]
    assert tables["common.Tag"]["extra"] == [99]
    assert tables["store.Category"]["ok"] is True


def test_relay_once_reports_a_down_service_and_exits_non_zero(databases: Any) -> None:
    shop_url = databases("shop")
    shop = FakeShop(shop_url)
    shop.create_schema()
    shop.populate(3)
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started = time.monotonic()
    done = run(relay_argv(shop_url, f"http://127.0.0.1:{port}/internal/events/",
                          "outbox_outboxevent", "monolith", "--once", "--json"), timeout=60)
    assert done.returncode == 1
    status = json.loads(done.stdout.strip().splitlines()[-1])
    assert status["state"] == "backing_off"
    assert "unreachable" in status["last_error"]
    assert status["failures"] >= 5
    assert time.monotonic() - started < 30
    shop.close()


def test_bad_source_url_is_one_line_and_exit_2(tmp_path: Path) -> None:
    done = run([*STRANGLER, "relay", "--source-db", f"sqlite:///{tmp_path}/missing/x.db",
                "--once"])
    assert done.returncode == 2
    assert done.stderr.startswith("strangler: error: cannot open sqlite:///")
    assert len(done.stderr.strip().splitlines()) == 1
    done = run([*STRANGLER, "reconcile", "--source-db", "mysql://x/y"])
    assert done.returncode == 2
    assert "use sqlite:///path or postgresql://" in done.stderr
    # a database that is not the monolith's (or not migrated): the hint says so
    empty = tmp_path / "empty.sqlite3"
    sqlite3.connect(empty).close()
    done = run([*STRANGLER, "backfill", "--source-db", f"sqlite:///{empty}"])
    assert done.returncode == 2
    assert "no such table" in done.stderr
    assert "strangler monolith migrate" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("databases", ["postgresql"], indirect=True)
def test_an_event_committed_out_of_order_is_not_lost(
        sync_pair: Callable[..., SyncPair]) -> None:
    # given two PostgreSQL transactions: the first takes position N and stays open,
    # the second takes N+1 and commits (a hole at N, for now)
    import psycopg

    pair = sync_pair(3)
    shop_url, service_url, shop, server = (pair.shop_url, pair.service_url, pair.shop,
                                           pair.server)
    slow = psycopg.connect(shop_url)  # not autocommit: an open transaction
    try:
        slow.execute("INSERT INTO outbox_outboxevent (event_id, aggregate_type, aggregate_id, "
                     "sequence, event_type, payload, occurred_at) VALUES ('slow-1', "
                     "'common.Tag', '50', 1, 'created', '{\"name\": \"s\", \"slug\": \"s\"}', "
                     "now())")
        shop.create("common.Tag")
        # when the relay runs while the slow transaction commits a second later
        relay = subprocess.Popen(
            relay_argv(shop_url, f"{server.url}/internal/events/", "outbox_outboxevent",
                       "monolith", "--once", "--json", "--hole-grace", "6"),
            env=base_env(), stdout=subprocess.PIPE, text=True)
        time.sleep(1.5)
        slow.commit()
        out, _ = relay.communicate(timeout=60)
        status = json.loads(out.strip().splitlines()[-1])
        # then the late event was delivered, after its successor, and no hole was skipped
        target = Database(service_url)
        processed = [r["event_id"] for r in target.query(
            "SELECT event_id FROM catalog_processedevent ORDER BY id")]
        target.close()
        assert relay.returncode == 0, status
        assert "slow-1" in processed
        assert processed[-1] == "slow-1"  # delivered after the event that committed first
        assert status["holes_skipped"] == 0
        assert status["position"] == status["head"]
    finally:
        slow.close()


@pytest.mark.parametrize("databases", ["postgresql"], indirect=True)
def test_a_transaction_open_for_12_seconds_loses_nothing(
        sync_pair: Callable[..., SyncPair], tmp_path: Path) -> None:
    """Issue 13: a write transaction far longer than any timer is waited for, not skipped."""
    import psycopg

    # given a relay running with a 1 s hole grace, and a transaction that takes a position
    # and stays open for 12 s (twelve graces, twice the default) while later changes commit
    pair = sync_pair(3)
    shop, server = pair.shop, pair.server
    relay = Process(relay_argv(pair.shop_url, f"{server.url}/internal/events/"), base_env(),
                    tmp_path / "relay.log").start()
    slow = psycopg.connect(pair.shop_url)
    try:
        slow.execute("INSERT INTO outbox_aggregatesequence (aggregate_type, aggregate_id, last) "
                     "VALUES ('common.Tag', '60', 1)")
        slow.execute("INSERT INTO common_tag (id, name, slug) VALUES (60, 's', 's')")
        slow.execute("INSERT INTO outbox_outboxevent (event_id, aggregate_type, aggregate_id, "
                     "sequence, event_type, payload, occurred_at) VALUES ('slow-30', "
                     "'common.Tag', '60', 1, 'created', '{\"name\": \"s\", \"slug\": \"s\"}', "
                     "now())")
        deadline = time.monotonic() + 12
        while time.monotonic() < deadline:
            shop.create("common.Tag")
            time.sleep(1.0)
        slow.commit()
        # then the relay delivers it once it commits, and skipped no hole
        time.sleep(3)
        code, status = relay_once(pair.shop_url, server)
        assert (code, status["lag_events"], status["holes_skipped"]) == (0, 0, 0), status
        target = Database(pair.service_url)
        got = target.query("SELECT outcome FROM catalog_processedevent WHERE event_id = 'slow-30'")
        target.close()
        assert got == [{"outcome": "applied"}]
        assert reconcile(pair.shop_url, server)[0] == 0
    finally:
        slow.close()
        relay.kill()
