"""``strangler cutover catalog`` and ``--undo`` with the real monolith and service (issue 13).

Before: after the flip the monolith still accepted catalog writes and the forward relay
carried them, and there was no undo. Now the monolith's moved tables are fenced in its
database, the service's writes come back through the reverse stream, and an undo replays
them into the monolith's tables before it owns them again.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import (
    STAFF_TOKEN,
    STRANGLER,
    SYNC_TOKEN,
    CatalogServer,
    MonolithServer,
    base_env,
    relay_argv,
)

from extracted.sync.database import Database

pytestmark = pytest.mark.slow
BOTH = pytest.mark.parametrize("databases", ["sqlite", "postgresql"], indirect=True)


def routes_text(monolith: str, catalog: str) -> str:
    routes = "\n".join(
        f'[[routes]]\nname = "{name}"\nmatch = {{ path_prefix = "{prefix}" }}\n'
        'mode = "monolith"\ntarget = "catalog"\n'
        for name, prefix in (("catalog", "/api/products/"),
                             ("catalog-categories", "/api/categories/"),
                             ("catalog-brands", "/api/brands/")))
    return (f'# kept by the edit\n[proxy]\nlisten = "127.0.0.1:0"\n\n'
            f'[admin]\nlisten = "127.0.0.1:0"\n'
            f'token_env = "STRANGLER_ADMIN_TOKEN"\n\n[upstreams.monolith]\n'
            f'url = "{monolith}"\n\n[upstreams.catalog]\nurl = "{catalog}"\n\n{routes}')


def _run(argv: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=env or base_env(), capture_output=True, text=True,
                          timeout=180, check=False)


def cutover_argv(monolith: MonolithServer, server: CatalogServer, routes: Path,
                 *extra: str) -> list[str]:
    return [*STRANGLER, "cutover", "catalog", "--source-db", monolith.source_db,
            "--service-db", server.database_url, "--service-url", server.url,
            "--monolith-url", monolith.url, "--token", SYNC_TOKEN, "--routes", str(routes),
            "--audit-log", str(routes.parent / "audit.jsonl"), "--actor", "test", "--json",
            *extra]


def _relay(source: str, target: str, table: str, stream: str) -> dict[str, Any]:
    done = _run(relay_argv(source, target, table, stream, "--once", "--json"))
    status = json.loads(done.stdout.strip().splitlines()[-1])
    assert done.returncode == 0, status
    return dict(status)


@BOTH
def test_cutover_fences_the_monolith_and_undo_loses_nothing(
        databases: Any, tmp_path: Path) -> None:
    # given a seeded monolith followed by the service, and the routes file
    pg = databases.vendor == "postgresql"
    (tmp_path / "mono").mkdir()
    monolith = MonolithServer(tmp_path / "mono", databases("shop") if pg else "")
    monolith.prepare().start()
    server = CatalogServer(databases("catalog"), tmp_path)
    server.migrate()
    server.start()
    monolith_api = httpx.Client(base_url=monolith.url, timeout=10,
                                headers={"Authorization": f"Token {monolith.token('staff')}"})
    service_api = httpx.Client(base_url=server.url, timeout=10,
                               headers={"Authorization": f"Token {STAFF_TOKEN}"})
    routes = tmp_path / "strangler.toml"
    routes.write_text(routes_text(monolith.url, server.url))
    forward = (monolith.source_db, f"{server.url}/internal/events/", "outbox_outboxevent",
               "monolith")
    reverse = (server.database_url, f"{monolith.url}/internal/catalog-events/",
               "catalog_outboxevent", "catalog")
    try:
        done = _run([*STRANGLER, "backfill", "--source-db", monolith.source_db,
                     "--service-url", server.url, "--token", SYNC_TOKEN, "--json"])
        assert done.returncode == 0, done.stderr
        assert monolith_api.patch("/api/products/1/", json={"price": "11.11"}).status_code == 200
        # when the catalog is cut over
        done = _run(cutover_argv(monolith, server, routes))
        report = json.loads(done.stdout)
        assert (done.returncode, report["ok"]) == (0, True), done.stdout + done.stderr
        assert report["pause"] < 10
        assert report["drained"]["forward"] >= 1  # the last monolith write, carried over
        # then the routes point at the service, comments kept
        text = routes.read_text()
        assert text.startswith("# kept by the edit")
        assert text.count('mode = "service"') == 3
        # and the monolith refuses catalog writes, through its API and through raw SQL
        refused = monolith_api.patch("/api/products/2/", json={"price": "2.22"})
        assert (refused.status_code, refused.json()["code"]) == (503, "fenced"), refused.text
        assert "store_product is fenced" in refused.json()["detail"]
        raw = Database(monolith.source_db)
        with pytest.raises(Exception, match="fenced"):
            raw.query("UPDATE store_product SET price = 3 WHERE id = 3")
        # and the service takes writes, which reach the monolith's own tables
        assert service_api.patch("/api/products/1/", json={"price": "42.00"}).status_code == 200
        made = service_api.post("/api/products/", json={
            "sku": "SVC-1", "name": "Made by the service", "slug": "svc-1", "category": 1,
            "brand": 1, "price": "5.00"})
        assert made.status_code == 201, made.text
        _relay(*reverse)
        rows = {r["id"]: str(r["price"]) for r in raw.query(
            "SELECT id, price FROM store_product WHERE id IN (1, ?)", [made.json()["id"]])}
        assert rows[1] in ("42.00", "42", "42.0")
        # when it is undone while the last service write has not been relayed yet
        assert service_api.patch("/api/products/4/", json={"name": "Last word"}
                                 ).status_code == 200
        done = _run(cutover_argv(monolith, server, routes, "--undo"))
        report = json.loads(done.stdout)
        assert (done.returncode, report["ok"]) == (0, True), done.stdout + done.stderr
        # then the monolith has every service write and owns the catalog again
        assert raw.query("SELECT name FROM store_product WHERE id = 4")[0]["name"] == "Last word"
        assert routes.read_text().count('mode = "monolith"') == 3
        assert monolith_api.patch("/api/products/2/", json={"price": "2.22"}).status_code == 200
        refused = service_api.patch("/api/products/3/", json={"price": "9.99"})
        assert (refused.status_code, refused.json()["code"]) == (503, "fenced"), refused.text
        created = monolith_api.post("/api/products/", json={
            "sku": "MONO-2", "name": "Back home", "slug": "mono-2", "category": 1,
            "brand": 1, "price": "3.00"})
        assert created.status_code == 201, created.text
        assert created.json()["id"] != made.json()["id"]
        # and the forward stream carries on; both sides are equal, history included
        _relay(*forward)
        done = _run([*STRANGLER, "reconcile", "--source-db", monolith.source_db,
                     "--service-url", server.url, "--token", SYNC_TOKEN, "--json"])
        assert done.returncode == 0, done.stdout[:3000]
        audit = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
        assert [(a["direction"], a["ok"], a["actor"]) for a in audit] == [
            ("cutover", True, "test"), ("undo", True, "test")]
        raw.close()
    finally:
        monolith_api.close()
        service_api.close()
        server.stop()
        monolith.stop()


def test_a_missing_route_fails_before_the_fence(tmp_path: Path) -> None:
    import sqlite3

    for name in ("mono", "svc"):
        sqlite3.connect(tmp_path / f"{name}.sqlite3").close()
    routes = tmp_path / "strangler.toml"
    routes.write_text('[proxy]\nlisten = "127.0.0.1:0"\n')
    done = _run([*STRANGLER, "cutover", "catalog", "--source-db",
                 f"sqlite:///{tmp_path / 'mono.sqlite3'}", "--service-db",
                 f"sqlite:///{tmp_path / 'svc.sqlite3'}", "--routes", str(routes),
                 "--audit-log", str(tmp_path / "audit.jsonl"), "--json"])
    report = json.loads(done.stdout)
    assert done.returncode == 1
    assert "has no route catalog, catalog-categories, catalog-brands" in report["error"]
    assert (report["pause"], report["rolled_back"]) == (0.0, [])
