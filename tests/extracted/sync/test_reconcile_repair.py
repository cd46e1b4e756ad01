"""``strangler reconcile --repair`` fixes every kind of divergence, as events (issue 13).

Before: reconcile found these but could not repair them, and the documented repair
(re-run the backfill) fixed 2 of 8.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from conftest import STRANGLER, SYNC_TOKEN
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


def _reconcile(pair: SyncPair, *extra: str) -> tuple[int, dict[str, object]]:
    done = run([*STRANGLER, "reconcile", "--source-db", pair.shop_url, "--service-url",
                pair.server.url, "--token", SYNC_TOKEN, "--range-size", "25", "--json", *extra])
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, json.loads(done.stdout)


@BOTH
def test_repair_fixes_eight_kinds_of_divergence(sync_pair: Callable[..., SyncPair]) -> None:  # noqa: F811 - the imported fixture
    # given a service in step with the shop
    pair = sync_pair(30)
    shop = pair.shop
    backfill(pair.shop_url, pair.server)
    for key in sorted(shop.live["store.Product"])[:5]:
        shop.stock(key, 2)
    assert relay_once(pair.shop_url, pair.server)[0] == 0
    assert _reconcile(pair)[0] == 0
    p = sorted(shop.live["store.Product"])
    # when both sides are damaged behind the sync's back, eight ways
    service = Database(pair.service_url)
    service.query("DELETE FROM catalog_product WHERE id = ?", [p[0]])            # 1 deleted
    service.query("UPDATE catalog_brand SET name = 'x' WHERE id = 2")             # 2 edited
    service.query("INSERT INTO catalog_tag (id, name, slug) VALUES (77, 'e', 'e')")  # 3 extra
    service.query("UPDATE catalog_productsignals SET in_stock = ? WHERE product_id = ?",
                  [False, p[1]])                                                  # 4 derived
    service.close()
    shop.execute("UPDATE store_product SET name = 'raw' WHERE id = ?", (p[2],))   # 5 raw edit
    shop.execute("INSERT INTO common_tag (id, name, slug) VALUES (88, 'r', 'r')")  # 6 raw add
    shop.execute("DELETE FROM store_product WHERE id = ?", (p[3],))               # 7 raw drop
    shop.change("store.Product", p[4], shop._fields("store.Product", p[4]))       # 8 lost event
    shop.execute("DELETE FROM outbox_outboxevent WHERE id = (SELECT max(id) FROM "
                 "outbox_outboxevent)")
    # then the dry run names one action per key, and changes nothing
    code, dry = _reconcile(pair)
    actions = {(a["aggregate_type"], a["key"]): a["action"] for a in dry["actions"]}  # type: ignore[attr-defined]
    assert code == 1
    assert actions == {
        ("store.Product", p[0]): "copy", ("store.Brand", 2): "update",
        ("common.Tag", 77): "delete", ("inventory.ProductStock", p[1]): "re-derive",
        ("store.Product", p[2]): "update", ("common.Tag", 88): "copy",
        ("store.Product", p[3]): "delete", ("store.Product", p[4]): "update",
        # products deleted on one side take their derived facts with them
        ("inventory.ProductStock", p[0]): "re-derive", ("reviews.ProductRating", p[0]):
        "re-derive", ("inventory.ProductStock", p[3]): "re-derive",
        ("reviews.ProductRating", p[3]): "re-derive",
    }
    assert _reconcile(pair)[0] == 1
    # when the repair is written and the relay delivers it
    code, done = _reconcile(pair, "--repair")
    assert (code, done["repaired"]) == (0, len(actions))
    code, status = relay_once(pair.shop_url, pair.server)
    assert (code, status["stuck_aggregates"], status["dead_letters"]) == (0, [], 0), status
    # then both sides are equal, row by row and version by version
    code, result = _reconcile(pair)
    assert code == 0, json.dumps(result, indent=1)[:3000]
    # and later changes of the repaired aggregates flow on (no gap)
    shop.change("store.Product", p[4], shop._fields("store.Product", p[4]))
    shop.change("store.Product", p[0], shop._fields("store.Product", p[0]))
    code, status = relay_once(pair.shop_url, pair.server)
    assert (code, status["dead_letters"]) == (0, 0), status
    assert _reconcile(pair)[0] == 0
