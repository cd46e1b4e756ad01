"""The engine-neutral plan and the pure renderers: no engine, no sockets."""

from __future__ import annotations

import doctest
import re

import pytest

from strangler_proxy.config import parse_config
from strangler_proxy.export import ExportError, build_plan, logs, nginx, plan, yaml_text
from strangler_proxy.routing import RouteTable

TEXT = """
[admin]
token = "t"

[upstreams.monolith]
url = "http://127.0.0.1:8000"

[upstreams.catalog]
url = "http://catalog:8001"

[upstreams.orders]
url = "http://orders.invalid:8002"

[[routes]]
name = "products"
match = { path_prefix = "/api/products/", methods = ["GET"] }
mode = "canary"
percent = 12.5
target = "catalog"
sticky = "header:X-User-Id"
group = "catalog"

[[routes]]
name = "item"
match = { path_template = "/api/items/{id}/detail.json" }
mode = "service"
target = "catalog"

[[routes]]
name = "orders"
match = { path = "/api/orders" }
mode = "monolith"
target = "orders"
"""


@pytest.mark.parametrize("module", [plan, nginx, yaml_text, logs])
def test_doctests_of_the_export_modules_pass(module: object) -> None:
    failures, tried = doctest.testmod(module)  # type: ignore[arg-type]
    assert (failures, tried > 0) == (0, True)


def test_plan_keeps_order_thresholds_and_salts_and_ends_with_the_default() -> None:
    exported = build_plan(parse_config(TEXT))
    assert [r.name for r in exported.routes] == ["products", "item", "orders", "default"]
    products = exported.routes[0]
    assert (products.threshold, products.salt, products.sticky_name) == (1250, "catalog",
                                                                         "x-user-id")
    assert [r.name for r in exported.canary_routes] == ["products"]
    # an upstream no route sends traffic to is left out: an engine would resolve its name
    assert [u.name for u in exported.upstreams] == ["monolith", "catalog"]


@pytest.mark.parametrize(("path", "route"), [
    ("/api/products/", "products"), ("/api/products/1/x", "products"),
    ("/api/items/7/detail.json", "item"), ("/api/items/7/detailxjson", "default"),
    ("/api/items//detail.json", "default"), ("/api/orders", "orders"),
    ("/api/orders/", "default"), ("/api/items/a/b/detail.json", "default"),
])
def test_planned_regexes_match_what_the_route_table_matches(path: str, route: str) -> None:
    config = parse_config(TEXT)
    table = RouteTable(config)
    exported = build_plan(config)
    first = next(r.name for r in exported.routes
                 if re.search(r.path_regex, path) and (not r.methods or "GET" in r.methods))
    assert first == table.decide("GET", path, {}, "1.2.3.4").route.name == route


def test_shadow_without_a_comparator_is_refused_for_every_engine() -> None:
    text = TEXT.replace('mode = "monolith"', 'mode = "shadow"')
    with pytest.raises(ExportError, match=r'routes\[2\] \("orders", line \d+\).*issue 16'):
        build_plan(parse_config(text))
    assert build_plan(parse_config(text), comparator_url="http://c:1").routes[2].mirror


def test_nginx_render_is_deterministic_and_quotes_regexes() -> None:
    exported = build_plan(parse_config(TEXT))
    first, second = nginx.render_nginx(exported, "/run/x"), nginx.render_nginx(exported, "/run/x")
    assert first == second
    assert '"~^[^ ]+ /api/items/[^/ ]+/detail\\\\.json $" item;' in first
    assert "split_clients \"catalog $strangler_key0\" $strangler_canary0 " \
           "{ 12.50% service; * monolith; }" in first


def test_engines_strip_every_header_our_proxy_owns() -> None:
    from strangler_proxy.export.plan import KNOWN_STRANGLER_HEADERS
    from strangler_proxy.headers import OWNED

    assert OWNED <= {name.lower().encode() for name in KNOWN_STRANGLER_HEADERS}
