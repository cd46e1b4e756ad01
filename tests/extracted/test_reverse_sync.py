"""After cutover: the service owns the catalog, the monolith keeps a read-only copy.

The service's API writes go to its own outbox (``catalog_outboxevent``); the same
``strangler relay`` delivers them to the monolith's ``/internal/catalog-events/``, which
keeps ``outbox.CatalogProductCopy`` (what ordering needs: sku, name, price) at most once.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import pytest
from conftest import STAFF_TOKEN, STRANGLER, SYNC_TOKEN, CatalogServer, MonolithServer, base_env
from conftest import relay_argv as _relay_argv

from extracted.sync.database import Database

pytestmark = pytest.mark.slow


def test_service_writes_reach_the_monolith_read_copy(tmp_path: Path) -> None:
    # given the monolith seeded, the service backfilled, and the copy initialised at cutover
    (tmp_path / "mono").mkdir()
    monolith = MonolithServer(tmp_path / "mono").prepare().start()
    server = CatalogServer(f"sqlite:///{tmp_path / 'catalog.sqlite3'}", tmp_path)
    server.migrate()
    server.start()
    try:
        run = {"env": base_env(), "capture_output": True, "text": True, "timeout": 120,
               "check": False}
        done = subprocess.run([*STRANGLER, "backfill", "--source-db", monolith.source_db,
                               "--service-url", server.url, "--token", SYNC_TOKEN,
                               "--hole-grace", "0"], **run)  # type: ignore[call-overload]
        assert done.returncode == 0, done.stderr
        done = subprocess.run([*STRANGLER[:1], "-m", "django", "catalog_copy_init"],
                              **dict(run, env=monolith.env()))  # type: ignore[call-overload]
        assert done.returncode == 0, done.stderr
        # when staff edit the catalog through the service
        staff = httpx.Client(base_url=server.url, timeout=10,
                             headers={"Authorization": f"Token {STAFF_TOKEN}"})
        made = staff.post("/api/products/", json={
            "sku": "AFTER-1", "name": "After cutover", "slug": "after-1", "category": 1,
            "brand": 1, "price": "42.00"})
        assert made.status_code == 201, made.text
        assert staff.patch("/api/products/1/", json={"price": "7.77", "name": "Renamed"}
                           ).status_code == 200
        doomed = staff.post("/api/products/", json={
            "sku": "AFTER-2", "name": "Short lived", "slug": "after-2", "category": 1,
            "brand": 1, "price": "1.00"}).json()["id"]
        assert staff.delete(f"/api/products/{doomed}/").status_code == 204
        staff.close()
        # and the relay runs in the reverse direction
        argv = _relay_argv(server.database_url, f"{monolith.url}/internal/catalog-events/",
                           "catalog_outboxevent", "catalog", "--once", "--json")
        done = subprocess.run(argv, **run)  # type: ignore[call-overload]
        status = json.loads(done.stdout.strip().splitlines()[-1])
        assert (done.returncode, status["lag_events"]) == (0, 0), done.stdout + done.stderr
        assert status["applied"] >= 4
        # then the monolith's copy has the service's state, and nothing is applied twice
        copy = Database(monolith.source_db)
        rows = {r["product_id"]: r for r in copy.query(
            "SELECT product_id, sku, name, price, sequence FROM outbox_catalogproductcopy")}
        new_id = made.json()["id"]
        assert (rows[1]["name"], str(rows[1]["price"])) == ("Renamed", "7.77")
        assert rows[new_id]["sku"] == "AFTER-1"
        assert doomed not in rows
        assert rows[2]["sequence"] >= 1  # untouched since cutover: from the init
        assert rows[2]["name"]
        # the service's sequence continued the monolith's history for product 1
        source = Database(server.database_url)
        seq = source.query("SELECT max(sequence) AS s FROM catalog_outboxevent WHERE "
                           "aggregate_type = 'store.Product' AND aggregate_id = '1'")[0]["s"]
        assert rows[1]["sequence"] == seq > 1
        again = subprocess.run(argv, **run)  # type: ignore[call-overload]
        assert json.loads(again.stdout.strip().splitlines()[-1])["delivered"] == 0
        copy.close()
        source.close()
    finally:
        server.stop()
        monolith.stop()
