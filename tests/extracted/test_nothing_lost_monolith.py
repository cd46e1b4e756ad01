"""Nothing lost, with the real monolith: its outbox, its workload, staff catalog writes.

While the monolith's workload generator shops (stock and rating facts change) and a staff
writer edits the catalog through the API (creates, updates, tag changes, deletes), the
backfill copies, the relay is killed with SIGKILL four times and the catalog service is
stopped and started. After quiescence: reconcile finds zero missing, extra or different rows
and no aggregate behind; every event after the backfill's mark was applied exactly once.
SQLite always; PostgreSQL with STRANGLER_TEST_PG_URL.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import (
    STRANGLER,
    SYNC_TOKEN,
    CatalogServer,
    MonolithServer,
    Process,
    base_env,
    relay_argv,
)

from extracted.sync.database import Database

pytestmark = pytest.mark.slow


class StaffWriter(threading.Thread):
    """Edits the catalog through the monolith's API like a staff member, bounded."""

    def __init__(self, base_url: str, token: str, limit: int = 400) -> None:
        super().__init__(daemon=True)
        self.client = httpx.Client(base_url=base_url, timeout=10,
                                   headers={"Authorization": f"Token {token}"})
        self.limit, self.count, self.halt = limit, 0, threading.Event()
        self.failures: list[str] = []

    def call(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        answer = self.client.request(method, url, **kwargs)
        self.count += 1
        if answer.status_code >= 500:
            self.failures.append(f"{method} {url}: {answer.status_code} {answer.text[:200]}")
        return answer

    def run(self) -> None:
        category = self.call("GET", "/api/categories/?page_size=1").json()["results"][0]["id"]
        brand = self.call("GET", "/api/brands/?page_size=1").json()["results"][0]["id"]
        n = 0
        while not self.halt.is_set() and self.count < self.limit:
            n += 1
            made = self.call("POST", "/api/products/", json={
                "sku": f"STAFF-{n}", "name": f"Staff product {n}", "slug": f"staff-{n}",
                "category": category, "brand": brand, "price": f"{n % 90 + 1}.50",
                "tags": ["new", "sale"][: n % 3]})
            if made.status_code != 201:
                self.failures.append(f"create {n}: {made.status_code} {made.text[:200]}")
                continue
            pid = made.json()["id"]
            self.call("PATCH", f"/api/products/{pid}/", json={"price": "9.99", "tags": ["gift"]})
            if n % 3 == 0:
                self.call("DELETE", f"/api/products/{pid}/")
            if n % 5 == 0:
                cat = self.call("POST", "/api/categories/", json={
                    "name": f"Staff cat {n}", "slug": f"staff-cat-{n}", "parent": category})
                if cat.status_code == 201:
                    self.call("DELETE", f"/api/categories/{cat.json()['id']}/")
            time.sleep(0.01)
        self.client.close()


def _run(argv: list[str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=base_env(), capture_output=True, text=True,
                          timeout=timeout, check=False)


@pytest.mark.parametrize("databases", ["sqlite", "postgresql"], indirect=True)
def test_nothing_lost_with_the_monolith_workload(databases: Any, tmp_path: Path) -> None:
    # given a seeded monolith and an empty catalog service
    pg = databases.vendor == "postgresql"
    (tmp_path / "mono").mkdir()
    monolith = MonolithServer(tmp_path / "mono", databases("shop") if pg else "")
    monolith.prepare().start()
    server = CatalogServer(databases("catalog"), tmp_path)
    server.migrate()
    server.start()
    staff = StaffWriter(monolith.url, monolith.token("staff"))
    workload = Process([*STRANGLER, "monolith", "workload", "--base-url", monolith.url,
                        "--requests", "100000", "--duration", "7", "--concurrency", "2"],
                       monolith.env(), tmp_path / "workload.log")
    relay = Process(relay_argv(monolith.source_db, f"{server.url}/internal/events/"),
                    base_env(), tmp_path / "relay.log")
    try:
        # when shoppers and staff write while the backfill copies
        workload.start()
        staff.start()
        done = _run([*STRANGLER, "backfill", "--source-db", monolith.source_db,
                     "--service-url", server.url, "--token", SYNC_TOKEN, "--batch-size",
                     "200", "--hole-grace", "1", "--json"])
        assert done.returncode == 0, done.stderr
        mark = json.loads(done.stdout)["high_water"]
        # and the relay is killed four times and the service stopped and started
        for round_ in range(4):
            relay.start()
            time.sleep(1.0)
            if round_ == 1:
                server.stop()
                time.sleep(1.0)
                server.start()
            relay.kill(signal.SIGKILL)
        assert workload.proc is not None
        workload.proc.wait(timeout=60)
        staff.halt.set()
        staff.join(timeout=60)
        assert staff.failures == []
        # then one relay run catches up after quiescence
        done = _run(relay_argv(monolith.source_db, f"{server.url}/internal/events/",
                               "outbox_outboxevent", "monolith", "--once", "--json"))
        status = json.loads(done.stdout.strip().splitlines()[-1])
        assert (done.returncode, status["lag_events"]) == (0, 0), status
        # and reconcile finds both sides equal, and every aggregate's changes applied
        done = _run([*STRANGLER, "reconcile", "--source-db", monolith.source_db,
                     "--service-url", server.url, "--token", SYNC_TOKEN, "--json"])
        report = json.loads(done.stdout)
        assert done.returncode == 0, json.dumps(report, indent=1)[:4000]
        assert report["versions"]["compared"] > 100
        # and every event after the backfill's mark was applied exactly once
        source, target = Database(monolith.source_db), Database(server.database_url)
        after = source.query("SELECT event_id, aggregate_type FROM outbox_outboxevent "
                             "WHERE id > ?", [mark])
        kinds = {r["aggregate_type"] for r in after}
        assert {"store.Product", "store.ProductTag", "inventory.ProductStock"} <= kinds
        processed = target.query("SELECT event_id FROM catalog_processedevent")
        assert sorted(r["event_id"] for r in processed) == sorted(r["event_id"] for r in after)
        status = httpx.get(f"{server.url}/internal/events/?stream=monolith",
                           headers={"Authorization": f"Bearer {SYNC_TOKEN}"}).json()
        assert status["applied_twice"] == 0
        source.close()
        target.close()
    finally:
        staff.halt.set()
        workload.kill()
        relay.kill()
        server.stop()
        monolith.stop()
