"""One poison event holds back only its own aggregate, and is seen (issue 13).

Before: a bad JSON row made the relay exit 2, an unknown aggregate type or a sequence gap made
it retry for ever, and ``relay --check`` and the status file said ``lag_events: 0``.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from conftest import STRANGLER, SYNC_TOKEN, base_env
from test_sync_processes import (  # noqa: F401 - sync_pair is a fixture
    BOTH,
    SyncPair,
    backfill,
    reconcile,
    relay_once,
    run,
    sync_pair,
)

from extracted.sync.database import Database

pytestmark = pytest.mark.slow


def _raw_event(shop: object, event_id: str, kind: str, key: str, sequence: int,
               payload: str) -> None:
    shop.execute(  # type: ignore[attr-defined]
        "INSERT INTO outbox_outboxevent (event_id, aggregate_type, aggregate_id, sequence, "
        "event_type, payload, occurred_at) VALUES (?, ?, ?, ?, 'updated', ?, "
        "'2026-11-26 10:00:00.000000')", (event_id, kind, key, sequence, payload))


def _letters(target_url: str, *args: str) -> tuple[int, str]:
    done = run([*STRANGLER, "relay", "--target", f"{target_url}/internal/events/", "--token",
                SYNC_TOKEN, "dead-letters", *args])
    return done.returncode, done.stdout


@BOTH
def test_poison_events_hold_only_their_aggregates(
        sync_pair: Callable[..., SyncPair]) -> None:  # noqa: F811 - the imported fixture
    # given a service in step
    pair = sync_pair(10)
    shop, server = pair.shop, pair.server
    backfill(pair.shop_url, server)
    products = sorted(shop.live["store.Product"])
    # when three poison rows sit among good changes: bad JSON, an unknown type, a gap
    if shop.vendor == "sqlite":
        _raw_event(shop, "bad-json", "store.Product", str(products[0]), 99, "{not json")
    _raw_event(shop, "unknown", "store.Order", "1", 1, "{}")
    _raw_event(shop, "gap", "store.Brand", "1", 50, json.dumps(
        {"name": "n", "slug": "s", "country": "DE"}))
    for key in products[1:4]:
        shop.change("store.Product", key, shop._fields("store.Product", key))
    shop.change("store.Brand", 1, {"name": "after", "slug": "b", "country": "DE"})
    # then one relay run delivers everything else and reports the stuck aggregates
    code, status = relay_once(pair.shop_url, server)
    stuck = ["store.Brand:1", "store.Order:1"]
    if shop.vendor == "sqlite":
        stuck = sorted([*stuck, f"store.Product:{products[0]}"])
    assert code == 0, status
    assert (status["lag_events"], status["stuck_aggregates"]) == (0, stuck), status
    assert status["state"] == "stuck"
    metrics = pair.server.workdir / "relay.prom"
    done = run([*STRANGLER, "relay", "--source-db", pair.shop_url, "--target",
                f"{server.url}/internal/events/", "--token", SYNC_TOKEN, "--once",
                "--metrics-file", str(metrics)])
    assert done.returncode == 0, done.stderr
    text = metrics.read_text()
    assert 'strangler_relay_stuck_aggregate{stream="monolith",aggregate="store.Brand:1"} 1' in text
    assert 'strangler_relay_dead_letters{stream="monolith"} ' in text
    check = run([*STRANGLER, "relay", "--source-db", pair.shop_url, "--target",
                 f"{server.url}/internal/events/", "--token", SYNC_TOKEN, "--check", "--json"])
    assert check.returncode == 1
    assert json.loads(check.stdout)["stuck_aggregates"] == stuck
    target = Database(pair.service_url)
    names = {r["id"]: r["name"] for r in target.query("SELECT id, name FROM catalog_product")}
    assert all(names[k] == f"product {k}" for k in products[1:4])
    assert target.query("SELECT name FROM catalog_brand WHERE id = 1")[0]["name"] != "after"
    target.close()
    # and the CLI lists them with reasons, and a skip of all plus a repair clears it
    code, out = _letters(server.url, "list")
    assert code == 1
    assert "expected sequence" in out
    assert "not part of the catalog" in out
    ids = [int(line.split()[0]) for line in out.splitlines() if " open " in line]
    done = run([*STRANGLER, "relay", "--target", f"{server.url}/internal/events/", "--token",
                SYNC_TOKEN, "dead-letters", "skip", *map(str, ids), "--actor", "test"])
    assert done.returncode == 0, done.stderr
    assert _letters(server.url, "list")[0] == 0
    repaired = run([*STRANGLER, "reconcile", "--source-db", pair.shop_url, "--service-url",
                    server.url, "--token", SYNC_TOKEN, "--repair", "--json"])
    assert repaired.returncode in (0, 1), repaired.stderr
    assert relay_once(pair.shop_url, server)[0] == 0
    code, result = reconcile(pair.shop_url, server)
    assert code == 0, json.dumps(result, indent=1)[:3000]
    _ = base_env
