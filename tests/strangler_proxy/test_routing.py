"""Routing decisions and the stickiness properties, as pure functions."""

from __future__ import annotations

import math

import pytest

from strangler_proxy.config import parse_config
from strangler_proxy.match import covers
from strangler_proxy.routing import RouteTable, bucket, canary_side

BASE = '''[admin]
token = "t"
[canary]
override_secret = "s3cret"
override_cookie = "strangler_side"
[upstreams.monolith]
url = "http://127.0.0.1:1"
[upstreams.catalog]
url = "http://127.0.0.1:2"
'''


def table(routes: str, secret: str | None = "s3cret") -> RouteTable:
    return RouteTable(parse_config(BASE + routes), override_secret=secret)


def route(name: str, match: str, mode: str = "canary", percent: float = 50,
          extra: str = "") -> str:
    return (f'[[routes]]\nname = "{name}"\nmatch = {match}\nmode = "{mode}"\n'
            f'percent = {percent}\ntarget = "catalog"\nsticky = "header:X-User-Id"\n{extra}\n')


KEYS = [f"user-{i}" for i in range(20_000)]


def test_same_key_always_lands_on_the_same_side() -> None:
    t = table(route("c", '{ path_prefix = "/api/" }'))
    sides = {t.decide("GET", "/api/x", {b"x-user-id": b"u7"}, "1.1.1.1").side for _ in range(50)}
    assert len(sides) == 1


def test_raising_the_percent_only_moves_users_to_the_service() -> None:
    previous: set[str] = set()
    for percent in (0, 1, 5, 10, 25, 50, 75, 99, 100):
        on_service = {k for k in KEYS[:5000] if canary_side(percent, "catalog", k) == "service"}
        assert previous <= on_service, f"someone went back to the monolith at {percent}%"
        previous = on_service
    assert len(previous) == 5000


@pytest.mark.parametrize("percent", [1, 10, 33.3, 50, 90])
def test_observed_share_is_within_a_binomial_confidence_interval(percent: float) -> None:
    n = len(KEYS)
    hits = sum(canary_side(percent, "catalog", k) == "service" for k in KEYS)
    p = percent / 100
    half_width = 4.0 * math.sqrt(p * (1 - p) / n)  # ~99.99% two-sided
    assert abs(hits / n - p) <= half_width, (hits / n, p, half_width)


def test_a_group_shares_one_salt_so_users_stay_on_one_side() -> None:
    grouped = 'group = "catalog"'
    t = table(route("products", '{ path_prefix = "/api/products/" }', extra=grouped)
              + route("brands", '{ path_prefix = "/api/brands/" }', extra=grouped))
    for key in KEYS[:2000]:
        headers = {b"x-user-id": key.encode()}
        a = t.decide("GET", "/api/products/1", headers, "ip").side
        b = t.decide("GET", "/api/brands/1", headers, "ip").side
        assert a == b


def test_different_routes_without_group_are_independent() -> None:
    same = sum(bucket("products", k) == bucket("brands", k) for k in KEYS[:2000])
    assert same < 10


def test_missing_sticky_header_falls_back_to_the_client_address() -> None:
    t = table(route("c", '{ path_prefix = "/" }'))
    got = {t.decide("GET", "/x", {}, "10.0.0.1").side for _ in range(20)}
    assert len(got) == 1
    expected = canary_side(50, "c", "10.0.0.1")
    assert got == {expected}


def test_override_needs_the_secret() -> None:
    t = table(route("c", '{ path_prefix = "/" }', percent=0))
    forced = t.decide("GET", "/x", {b"x-strangler-side": b"service:s3cret"}, "ip")
    wrong = t.decide("GET", "/x", {b"x-strangler-side": b"service:guess"}, "ip")
    cookie = t.decide("GET", "/x", {b"cookie": b"a=1; strangler_side=service:s3cret"}, "ip")
    assert (forced.side, forced.reason, forced.upstream) == ("service", "override", "catalog")
    assert wrong.side == "monolith"
    assert cookie.side == "service"
    off = table(route("c", '{ path_prefix = "/" }', percent=0), secret=None)
    assert off.decide("GET", "/x", {b"x-strangler-side": b"service:s3cret"}, "ip").side == \
        "monolith"


def test_modes_pick_the_side() -> None:
    t = table(route("m", '{ path = "/m" }', mode="monolith")
              + route("s", '{ path = "/s" }', mode="service")
              + route("sh", '{ path = "/sh" }', mode="shadow"))
    m, s, sh = (t.decide("GET", p, {}, "ip") for p in ("/m", "/s", "/sh"))
    assert (m.upstream, s.upstream, sh.upstream) == ("monolith", "catalog", "monolith")
    assert sh.shadow
    assert not m.shadow
    assert not s.shadow


def test_templates_methods_and_headers_filter_in_order() -> None:
    t = table(route("one", '{ path_template = "/api/products/{id}/", methods = ["GET"] }',
                    mode="service")
              + route("hdr", '{ path_prefix = "/api/", headers = { "X-Beta" = "1" } }',
                      mode="service")
              + route("rest", '{ path_prefix = "/api/products/" }', mode="monolith"))
    assert t.decide("GET", "/api/products/42/", {}, "ip").route.name == "one"
    assert t.decide("POST", "/api/products/42/", {}, "ip").route.name == "rest"
    assert t.decide("GET", "/api/products/42/reviews/", {}, "ip").route.name == "rest"
    assert t.decide("GET", "/api/other", {b"x-beta": b"1"}, "ip").route.name == "hdr"
    assert t.decide("GET", "/api/other", {}, "ip").route.name == "default"
    assert t.decide("OPTIONS", "*", {}, "ip").route.name == "default"


def test_exact_path_does_not_match_longer_paths() -> None:
    t = table(route("exact", '{ path = "/health" }', mode="service"))
    assert t.decide("GET", "/health", {}, "ip").route.name == "exact"
    assert t.decide("GET", "/healthz", {}, "ip").route.name == "default"


def test_covers_spots_shadowed_routes() -> None:
    from strangler_proxy.config import Match
    assert covers(Match(path_prefix="/api/"), Match(path_template="/api/{x}/"))
    assert not covers(Match(path_prefix="/api/", methods=frozenset({"GET"})),
                      Match(path_prefix="/api/x"))
    assert covers(Match(path_template="/a/{x}/"), Match(path="/a/1/"))


def test_indexed_dispatch_picks_the_same_route_as_a_linear_scan() -> None:
    import random
    import re as regex

    from strangler_proxy.match import match_regex

    rng = random.Random(7)
    words = ["api", "v1", "products", "p", "brands", "{id}", "x", ""]
    routes = ""
    for i in range(60):
        parts = "/".join(rng.choice(words[:-1]) for _ in range(rng.randint(1, 4)))
        kind = rng.choice(["path_prefix", "path", "path_template"])
        if kind == "path_template" and "{id}" not in parts:
            parts += "/{id}"
        if kind != "path_template":
            parts = parts.replace("{id}", "7")
        end = rng.choice(["", "/"])
        routes += route(f"r{i}", f'{{ {kind} = "/{parts}{end}" }}', mode="service")
    t = table(routes)
    for _ in range(3000):
        path = "/" + "/".join(rng.choice(["api", "v1", "products", "p", "brands", "7", "x",
                                          "pro"]) for _ in range(rng.randint(0, 5)))
        path += rng.choice(["", "/"])
        expected = next((r.name for r in t.routes
                         if regex.match(match_regex(r.match), path)), "default")
        assert t.decide("GET", path, {}, "ip").route.name == expected, path


def test_cached_route_answers_equal_uncached_ones_and_stay_bounded() -> None:
    routes = (route("gets", '{ path_prefix = "/api/", methods = ["GET"] }', mode="service")
              + route("tpl", '{ path_template = "/api/p/{id}/" }', mode="monolith"))
    t = table(routes)
    paths = ["/api/p/1/", "/api/p/2/", "/other", "/api/", "/api/p/1/x", "/" + "a" * 300]
    for _ in range(3):  # first pass fills the cache, later passes read it
        for method in ("GET", "POST"):
            for path in paths:
                decided = t.decide(method, path, {}, "1.1.1.1").route.name
                assert decided == t.match(method, path, {}).route.name, (method, path)
    cache = t._matches  # noqa: SLF001 - the bound is the point of this test
    assert cache is not None
    assert all(len(path) <= 256 for _, path in cache)
    with_headers = table(route("h", '{ path_prefix = "/api/", headers = { X-Beta = "1" } }'))
    assert with_headers._matches is None  # noqa: SLF001 - header filters: never cached
    assert with_headers.decide("GET", "/api/x", {b"x-beta": b"1"}, "1.1.1.1").route.name == "h"
    assert with_headers.decide("GET", "/api/x", {}, "1.1.1.1").route.name != "h"
