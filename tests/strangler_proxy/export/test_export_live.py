"""The same request corpus through our proxy and through the exported nginx / HAProxy config
lands on the same routes and upstreams (live: real engines from Debian's packages)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from engine_harness import exported_engine, side_of
from proxy_harness import Request, answer_with, response, running_proxy

ROUTES = """
[[routes]]
name = "catalog"
match = { path_prefix = "/api/products/", methods = ["GET", "HEAD"] }
mode = "canary"
percent = 30
target = "catalog"
sticky = "header:X-User-Id"

[[routes]]
name = "catalog_writes"
match = { path_prefix = "/api/products/" }
mode = "service"
target = "catalog"

[[routes]]
name = "item"
match = { path_template = "/api/items/{id}/", headers = { "X-Beta" = "1" } }
mode = "service"
target = "catalog"

[[routes]]
name = "orders"
match = { path = "/api/orders" }
mode = "monolith"
target = "catalog"

[[routes]]
name = "cart"
match = { path_prefix = "/api/cart/" }
mode = "canary"
percent = 50
target = "catalog"
sticky = "cookie:sessionid"
group = "shop"

[[routes]]
name = "basket"
match = { path_prefix = "/api/basket/" }
mode = "canary"
percent = 50
target = "catalog"
sticky = "cookie:sessionid"
group = "shop"
"""

USERS = [f"user-{n}" for n in range(40)]


def corpus() -> list[tuple[str, str, dict[str, str]]]:
    """(method, path, headers): every route, its filters, near misses, keyed and keyless."""
    requests: list[tuple[str, str, dict[str, str]]] = []
    for user in USERS:
        requests += [
            ("GET", f"/api/products/{user}/", {"X-User-Id": user}),
            ("HEAD", "/api/products/", {"X-User-Id": user}),
            ("GET", f"/api/cart/{user}", {"Cookie": f"a=1; sessionid={user}"}),
            ("GET", "/api/basket/", {"Cookie": f"sessionid={user}"}),
        ]
    requests += [
        ("GET", "/api/products/1/", {}),  # no key: the client address decides
        ("POST", "/api/products/", {"X-User-Id": "user-1"}),  # method filter falls through
        ("DELETE", "/api/products/9/", {}),
        ("GET", "/api/items/7/", {"X-Beta": "1"}),
        ("GET", "/api/items/7/", {"X-Beta": "2"}),  # header value differs: default route
        ("GET", "/api/items/7/", {}),
        ("GET", "/api/items//", {"X-Beta": "1"}),  # empty segment: no template match
        ("GET", "/api/items/7/extra/", {"X-Beta": "1"}),
        ("GET", "/api/orders", {}),
        ("GET", "/api/orders?page=2", {}),
        ("GET", "/api/orders/", {}),  # exact path: the trailing slash does not match
        ("GET", "/", {}),
        ("GET", "/api/product", {}),
        ("PUT", "/api/cart/x", {}),
    ]
    return requests


def outcomes(base: str) -> list[tuple[str, str]]:
    with httpx.Client(base_url=base, timeout=10) as client:
        return [side_of(client.request(m, p, headers=h)) for m, p, h in corpus()]


def handlers() -> dict[str, object]:
    return {"monolith": answer_with("monolith"), "catalog": answer_with("catalog")}


@pytest.mark.parametrize("engine", ["nginx", "haproxy", "envoy"])
def test_exported_engine_picks_the_same_route_and_upstream_as_our_proxy(
        tmp_path: Path, engine: str) -> None:
    # given our proxy and the exported engine on the same upstreams
    with running_proxy(tmp_path, handlers(), ROUTES) as ours, \
            exported_engine(engine, ours.config_path, tmp_path / engine) as theirs:
        # when the same corpus goes through both
        expected = outcomes(ours.url)
        got = outcomes(theirs)
    # then every request lands on the same route; the upstream too where the engine can
    # pick the same users (HAProxy, Envoy: our blake2b bucket in Lua; nginx: split_clients)
    assert [r for r, _ in got] == [r for r, _ in expected]
    canary = {"catalog", "cart", "basket"}
    for (route, side), (_, their_side) in zip(expected, got, strict=True):
        if engine != "nginx" or route not in canary:
            assert (route, their_side) == (route, side)
    assert Counter(r for r, _ in expected)["item"] == 1
    assert {s for r, s in expected if r == "catalog"} == {"catalog", "monolith"}


def test_nginx_canary_is_sticky_monotone_and_shared_by_a_group(tmp_path: Path) -> None:
    with running_proxy(tmp_path, handlers(), ROUTES) as ours, \
            exported_engine("nginx", ours.config_path, tmp_path / "nginx") as theirs, \
            httpx.Client(base_url=theirs, timeout=10) as client:
        def side(path: str, user: str) -> str:
            return client.get(path, headers={"Cookie": f"sessionid={user}"}).text
        users = [f"u{n}" for n in range(200)]
        first = {u: side("/api/cart/", u) for u in users}
        again = {u: side("/api/cart/", u) for u in users}
        basket = {u: side("/api/basket/", u) for u in users}
    assert first == again  # each user stays on one side
    assert first == basket  # one group, one side for all its routes
    share = sum(s == "catalog" for s in first.values()) / len(users)
    assert 0.35 < share < 0.65  # 50%: binomial(200) is within ±0.15 far beyond 4 sigma


def test_client_sent_strangler_and_forwarding_headers_never_reach_the_upstream(
        tmp_path: Path) -> None:
    with running_proxy(tmp_path, handlers(), ROUTES) as ours:
        for engine in ("nginx", "haproxy", "envoy"):
            monolith = ours.upstreams["monolith"]
            monolith.requests.clear()
            with exported_engine(engine, ours.config_path, tmp_path / engine) as theirs:
                reply = httpx.get(f"{theirs}/api/orders", headers={
                    "X-Strangler-Shadow": "1", "X-Strangler-Side": "service:x",
                    "X-Forwarded-For": "6.6.6.6", "X-Request-ID": "abc-1"}, timeout=10)
            seen: Request = monolith.requests[-1]
            names = {n.lower() for n, _ in seen.headers}
            assert not any(n.startswith("x-strangler-") for n in names), (engine, names)
            assert seen.header("X-Forwarded-For") == "127.0.0.1", engine
            assert seen.header("X-Request-ID") == "abc-1", engine
            assert reply.headers["x-strangler-route"] == "orders;target=monolith", engine


SHADOW_AND_FALLBACK = """
[[routes]]
name = "reviews"
match = { path_prefix = "/api/reviews/" }
mode = "shadow"
target = "catalog"

[[routes]]
name = "fragile"
match = { path_prefix = "/api/fragile/" }
mode = "service"
target = "catalog"
fallback = true
"""


def test_nginx_mirrors_safe_shadow_requests_and_falls_back_like_our_proxy(
        tmp_path: Path) -> None:
    async def catalog(req: Request, transport: asyncio.Transport) -> None:
        status = 503 if "fail" in req.url else 200
        transport.write(response(status, b"catalog"))

    comparator = {"comparator": answer_with("comparator")}
    with running_proxy(tmp_path, {"monolith": answer_with("monolith"), "catalog": catalog,
                                  **comparator}, SHADOW_AND_FALLBACK) as ours:
        url = ours.upstreams["comparator"].url
        with exported_engine("nginx", ours.config_path, tmp_path / "nginx", url) as theirs, \
                httpx.Client(base_url=theirs, timeout=10) as client:
            shadow_get = client.get("/api/reviews/1?x=1")
            shadow_post = client.post("/api/reviews/", content=b"{}")
            fell_back = client.get("/api/fragile/fail")
            not_resent = client.post("/api/fragile/fail", content=b"{}")
            served = client.get("/api/fragile/ok")
            for _ in range(50):  # mirrors are sent in the background
                if ours.upstreams["comparator"].requests:
                    break
                time.sleep(0.05)
    copies = ours.upstreams["comparator"].requests
    assert (shadow_get.text, shadow_post.text) == ("monolith", "monolith")
    assert [(c.method, c.url) for c in copies] == [("GET", "/api/reviews/1?x=1")]
    assert copies[0].header("X-Strangler-Mirror-Route") == "reviews"
    assert copies[0].header("X-Strangler-Mirror-Target") == "catalog"
    assert (fell_back.status_code, fell_back.text) == (200, "monolith")
    assert (not_resent.status_code, not_resent.text) == (503, "catalog")
    assert served.text == "catalog"


def _keys() -> list[bytes]:
    # salt "catalog" + NUL is 8 bytes: these lengths put the message on either side of
    # blake2b's 128-byte block boundary; non-ASCII bytes are hashed as UTF-8 of latin-1.
    lengths = [1, 119, 120, 121, 248, 249, 250, 300]
    keys = [bytes([97 + n % 26]) * n for n in lengths]
    keys += [b"caf\xe9-" + str(n).encode() for n in range(20)]
    keys += [f"user-{n}".encode() for n in range(40)]
    return keys


@pytest.mark.parametrize("engine", ["haproxy", "envoy"])
def test_lua_bucket_puts_the_same_keys_on_the_service_as_our_proxy(
        tmp_path: Path, engine: str) -> None:
    routes = ROUTES.replace("percent = 30", "percent = 50")
    with running_proxy(tmp_path, handlers(), routes) as ours, \
            exported_engine(engine, ours.config_path, tmp_path / engine) as theirs:
        def sides(base: str) -> list[str]:
            with httpx.Client(base_url=base, timeout=10) as client:
                return [client.get("/api/products/1/", headers={"X-User-Id": key}).text
                        for key in _keys()]
        expected, got = sides(ours.url), sides(theirs)
    assert got == expected
    assert set(expected) == {"catalog", "monolith"}


def test_envoy_mirrors_only_safe_shadow_requests_to_the_comparator(tmp_path: Path) -> None:
    routes = SHADOW_AND_FALLBACK.split("[[routes]]\nname = \"fragile\"")[0]
    upstreams = {n: answer_with(n) for n in ("monolith", "catalog", "comparator")}
    with running_proxy(tmp_path, upstreams, routes) as ours:
        comparator = ours.upstreams["comparator"]
        with exported_engine("envoy", ours.config_path, tmp_path / "envoy",
                             comparator.url) as theirs, \
                httpx.Client(base_url=theirs, timeout=10) as client:
            got = client.get("/api/reviews/1?x=1"), client.post("/api/reviews/", content=b"{}")
            for _ in range(50):  # mirrors are sent in the background
                if comparator.requests:
                    break
                time.sleep(0.05)
    assert [r.text for r in got] == ["monolith", "monolith"]
    assert [(c.method, c.url) for c in comparator.requests] == [("GET", "/api/reviews/1?x=1")]
    assert comparator.requests[0].header("X-Strangler-Mirror-Route") == "reviews"
    assert comparator.requests[0].header("X-Strangler-Mirror-Target") == "catalog"
