"""The forwarding path against real servers on 127.0.0.1, checked on the wire."""

from __future__ import annotations

import asyncio
import hashlib
import socket
import time
from pathlib import Path

import httpx
import pytest
from proxy_harness import Request, answer_with, raw_exchange, response, running_proxy

from strangler_proxy import OfferSink

CATALOG_ROUTE = """
[[routes]]
name = "catalog"
match = { path_prefix = "/api/products/" }
mode = "service"
target = "catalog"
"""


def test_forwards_and_says_which_route_and_side_served(tmp_path: Path) -> None:
    handlers = {"monolith": answer_with("monolith"), "catalog": answer_with("catalog")}
    with running_proxy(tmp_path, handlers, CATALOG_ROUTE) as run:
        a = httpx.get(f"{run.url}/api/products/1", timeout=5)
        b = httpx.get(f"{run.url}/other", timeout=5)
    assert (a.status_code, a.text, a.headers["x-strangler-route"]) == \
        (200, "catalog", "catalog;target=catalog")
    assert (b.text, b.headers["x-strangler-route"]) == ("monolith", "default;target=monolith")


def test_route_header_can_be_switched_off(tmp_path: Path) -> None:
    with running_proxy(tmp_path, {"monolith": answer_with("m")}, proxy="route_header = false"
                       ) as run:
        got = httpx.get(f"{run.url}/", timeout=5)
    assert got.status_code == 200
    assert "x-strangler-route" not in got.headers


def test_hop_by_hop_headers_are_stripped_on_the_wire(tmp_path: Path) -> None:
    with running_proxy(tmp_path, {"monolith": answer_with("m")}) as run:
        raw_exchange(run.port, b"GET /x HTTP/1.1\r\nHost: shop\r\nConnection: keep-alive, "
                     b"X-Secret-Hop\r\nX-Secret-Hop: 1\r\nKeep-Alive: timeout=5\r\n"
                     b"TE: trailers\r\n"
                     b"Proxy-Authorization: Basic Zm9v\r\nUpgrade: h2c\r\nX-Kept: yes\r\n"
                     b"Connection: close\r\n\r\n")
        raw = bytes(run.upstreams["monolith"].raw_connections[0]).lower()
    head = raw.split(b"\r\n\r\n")[0]
    for name in (b"x-secret-hop", b"keep-alive:", b"\r\nte:", b"proxy-authorization",
                 b"upgrade:", b"connection: keep-alive"):
        assert name not in head, name
    assert b"x-kept: yes" in head


def test_forwarded_headers_replace_untrusted_client_copies(tmp_path: Path) -> None:
    with running_proxy(tmp_path, {"monolith": answer_with("m")}) as run:
        httpx.get(f"{run.url}/x", headers={"X-Forwarded-For": "6.6.6.6", "X-Real-IP": "6.6.6.6",
                                          "X-Forwarded-Proto": "https", "Host": "shop.example",
                                          "traceparent": "00-abc-def-01"}, timeout=5)
        req = run.upstreams["monolith"].requests[0]
    assert req.header("x-forwarded-for") == "127.0.0.1"
    assert req.header("x-forwarded-proto") == "http"
    assert req.header("x-forwarded-host") == "shop.example"
    assert req.header("x-real-ip") is None
    assert req.header("via") == "1.1 strangler"
    assert req.header("host") == "shop.example"  # host = "keep" by default
    assert req.header("traceparent") == "00-abc-def-01"


def test_trusted_proxy_copies_are_extended(tmp_path: Path) -> None:
    with running_proxy(tmp_path, {"monolith": answer_with("m")},
                       proxy='trusted_proxies = ["127.0.0.0/8"]') as run:
        httpx.get(f"{run.url}/x", headers={"X-Forwarded-For": "1.2.3.4",
                                          "X-Forwarded-Proto": "https"}, timeout=5)
        req = run.upstreams["monolith"].requests[0]
    assert req.header("x-forwarded-for") == "1.2.3.4, 127.0.0.1"
    assert req.header("x-forwarded-proto") == "https"


def test_request_id_is_generated_or_propagated(tmp_path: Path) -> None:
    with running_proxy(tmp_path, {"monolith": answer_with("m")}) as run:
        given = httpx.get(f"{run.url}/a", headers={"X-Request-ID": "req-42"}, timeout=5)
        made = httpx.get(f"{run.url}/b", timeout=5)
        sent = [r.header("x-request-id") for r in run.upstreams["monolith"].requests]
    assert given.headers["x-request-id"] == "req-42"
    assert sent[0] == "req-42"
    assert made.headers["x-request-id"] == sent[1]
    assert sent[1]
    assert sent[1] != "req-42"


def test_host_rewrite_and_location_rewrite(tmp_path: Path) -> None:
    async def redirect(req: Request, transport: asyncio.Transport) -> None:
        port = transport.get_extra_info("sockname")[1]
        transport.write(response(302, b"", [("Location", f"http://127.0.0.1:{port}/next/"),
                                            ("Content-Length", "0")]))
    extra = ""
    with running_proxy(tmp_path, {"monolith": redirect}, extra=extra) as run:
        text = run.config_path.read_text() + 'host = "rewrite"\n'
        run.config_path.write_text(text)
        assert run.loop.call(lambda: run.app.reload(force=True))[0]
        got = httpx.get(f"{run.url}/x", headers={"Host": "shop.example"}, timeout=5)
        req = run.upstreams["monolith"].requests[0]
    assert req.header("host") == f"127.0.0.1:{run.upstreams['monolith'].port}"
    assert got.headers["location"] == "http://shop.example/next/"


def test_identical_heads_still_get_per_request_host_location_and_framing(
        tmp_path: Path) -> None:
    # Heads are built from caches keyed by the header list: what depends on more than the
    # headers (the upstream's host setting, the client's Host, the method) must not leak.
    async def redirect(req: Request, transport: asyncio.Transport) -> None:
        port = transport.get_extra_info("sockname")[1]
        transport.write(response(302, b"", [("Location", f"http://127.0.0.1:{port}/next/"),
                                            ("Content-Length", "0")]))
    with running_proxy(tmp_path, {"monolith": redirect}) as run, \
            httpx.Client(timeout=5) as client:
        kept = client.get(f"{run.url}/x", headers={"Host": "a.example"})
        other = client.get(f"{run.url}/x", headers={"Host": "b.example"})
        run.config_path.write_text(run.config_path.read_text() + 'host = "rewrite"\n')
        assert run.loop.call(lambda: run.app.reload(force=True))[0]
        rewritten = client.get(f"{run.url}/x", headers={"Host": "a.example"})
        hosts = [r.header("host") for r in run.upstreams["monolith"].requests]
    assert kept.headers["location"] == "http://a.example/next/"
    assert other.headers["location"] == "http://b.example/next/"
    assert rewritten.headers["location"] == "http://a.example/next/"
    assert hosts == ["a.example", "b.example", f"127.0.0.1:{run.upstreams['monolith'].port}"]


def test_response_head_cache_stays_bounded_and_drops_connection_named_headers() -> None:
    from strangler_proxy.edge import forward

    forward.HEAD_CACHE.clear()
    big = [(b"X-Big", b"v" * (forward.HEAD_CACHE_ENTRY_BYTES + 1))]
    assert forward.cached_response_lines(big)[0].startswith(b"X-Big: v")
    assert forward.HEAD_CACHE == {}  # too large to keep
    for n in range(forward.HEAD_CACHE_SIZE + 10):
        lines = forward.cached_response_lines([(b"X-N", b"%d" % n), (b"Connection", b"X-N")])
        assert lines[0] == b""  # the header Connection names is dropped
        assert 0 < len(forward.HEAD_CACHE) <= forward.HEAD_CACHE_SIZE
    assert forward.cached_response_lines([(b"Content-Length", b"3"), (b"A", b"b")]) == (
        b"A: b\r\n", b"3", False, False, False)


def test_many_set_cookie_headers_stay_apart(tmp_path: Path) -> None:
    async def cookies(req: Request, transport: asyncio.Transport) -> None:
        transport.write(response(200, b"x", [("Set-Cookie", "a=1; Path=/"),
                                             ("Set-Cookie", "b=2, c=3"),
                                             ("Content-Length", "1")]))
    with running_proxy(tmp_path, {"monolith": cookies}) as run:
        got = httpx.get(f"{run.url}/", timeout=5)
    assert got.headers.get_list("set-cookie") == ["a=1; Path=/", "b=2, c=3"]


@pytest.mark.parametrize("bad", [
    b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
    b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 30\r\n\r\nabc",
    b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3x\r\n\r\nabc",
    b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
    b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n3\r\nabc\r\n",
])
def test_smuggling_attempts_are_rejected_and_never_forwarded(tmp_path: Path, bad: bytes) -> None:
    with running_proxy(tmp_path, {"monolith": answer_with("m")}) as run:
        got = raw_exchange(run.port, bad)
        time.sleep(0.05)
        seen = run.upstreams["monolith"].bytes_received
    assert got.startswith(b"HTTP/1.1 400 "), got[:80]
    assert seen == 0


def test_chunked_request_is_reframed_for_the_upstream(tmp_path: Path) -> None:
    with running_proxy(tmp_path, {"monolith": answer_with("m")}) as run:
        got = raw_exchange(run.port, b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked"
                           b"\r\nConnection: close\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
        req = run.upstreams["monolith"].requests[0]
    assert got.startswith(b"HTTP/1.1 200")
    assert req.body == b"abcde"
    assert b";ext=1" not in req.raw  # our own framing, not the client's


def test_header_and_body_limits(tmp_path: Path) -> None:
    with running_proxy(tmp_path, {"monolith": answer_with("m")},
                       proxy="max_header_bytes = 2048\nmax_body_bytes = 100") as run:
        big_header = httpx.get(f"{run.url}/", headers={"X-Big": "a" * 4000}, timeout=5)
        big_body = httpx.post(f"{run.url}/", content=b"x" * 101, timeout=5)
        chunked = raw_exchange(run.port, b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: "
                               b"chunked\r\n\r\n" + b"65\r\n" + b"y" * 101 + b"\r\n0\r\n\r\n")
        ok = httpx.post(f"{run.url}/", content=b"x" * 100, timeout=5)
    assert big_header.status_code == 431
    assert big_body.status_code == 413
    assert chunked.startswith(b"HTTP/1.1 413")
    assert ok.status_code == 200


def test_no_body_size_limit_by_default(tmp_path: Path) -> None:
    # given the default routes file (no proxy.max_body_bytes), like nginx with
    # client_max_body_size 0
    with running_proxy(tmp_path, {"monolith": answer_with("m")}) as run:
        # when a client announces a 5 GiB body and waits for the go-ahead
        with socket.create_connection(("127.0.0.1", run.port), 5) as sock:
            sock.settimeout(5)
            sock.sendall(b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 5368709120\r\n"
                         b"Expect: 100-continue\r\n\r\n")
            answer = sock.recv(4096)
    # then it is told to go on, not refused with 413
    assert answer.startswith(b"HTTP/1.1 100 Continue"), answer[:80]


def test_expect_100_continue_is_answered_then_body_forwarded(tmp_path: Path) -> None:
    with running_proxy(tmp_path, {"monolith": answer_with("m")}) as run, \
            socket.create_connection(("127.0.0.1", run.port), timeout=5) as sock:
        sock.sendall(b"PUT /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                     b"Expect: 100-continue\r\n\r\n")
        interim = sock.recv(100)
        sock.sendall(b"hello")
        final = sock.recv(1000)
        req = run.upstreams["monolith"].requests[0]
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert final.startswith(b"HTTP/1.1 200")
    assert req.body == b"hello"
    assert req.header("expect") is None


@pytest.mark.parametrize(("method", "status"), [("HEAD", 200), ("GET", 204), ("GET", 304)])
def test_head_204_304_have_no_body_and_keep_alive_works(tmp_path: Path, method: str,
                                                        status: int) -> None:
    async def lying(req: Request, transport: asyncio.Transport) -> None:
        if req.url == "/next":
            transport.write(response(200, b"next"))
        elif status == 200:
            transport.write(response(200, b"", [("Content-Length", "1234")]))
        else:
            transport.write(response(status, b"", []))
    with running_proxy(tmp_path, {"monolith": lying}) as run, httpx.Client(timeout=5) as client:
        first = client.request(method, f"{run.url}/x")
        second = client.get(f"{run.url}/next")  # same connection: framing must be intact
    assert first.status_code == status
    assert first.content == b""
    assert second.text == "next"


def test_upstream_chunked_and_close_delimited_bodies_reach_the_client(tmp_path: Path) -> None:
    async def varied(req: Request, transport: asyncio.Transport) -> None:
        if req.url == "/chunked":
            transport.write(response(200, b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
                                     [("Transfer-Encoding", "chunked")]))
        else:
            transport.write(response(200, b"until close", [("Connection", "close")]))
            transport.close()
    with running_proxy(tmp_path, {"monolith": varied}) as run, httpx.Client(timeout=5) as c:
        chunked = c.get(f"{run.url}/chunked")
        closed = c.get(f"{run.url}/close")
        again = c.get(f"{run.url}/chunked")
    assert chunked.text == "hello world"
    assert closed.text == "until close"
    assert again.text == "hello world"


def test_connect_error_is_502_and_timeout_is_504(tmp_path: Path) -> None:
    async def slow(req: Request, transport: asyncio.Transport) -> None:
        await asyncio.sleep(5)
    with running_proxy(tmp_path, {"monolith": slow}, CATALOG_ROUTE,
                       upstream_urls={"catalog": "http://127.0.0.1:9"}) as run:
        dead = httpx.get(f"{run.url}/api/products/1", timeout=10)
        started = time.monotonic()
        slow_answer = httpx.get(f"{run.url}/slow", timeout=10)
        waited = time.monotonic() - started
        metrics = run.app.metrics_text()
    assert dead.status_code == 502
    assert "catalog" in dead.text
    assert slow_answer.status_code == 504
    assert 1.5 < waited < 4.0  # read_timeout = 2 in the harness
    assert 'strangler_upstream_errors_total{upstream="catalog",kind="connect"} 1' in metrics


def test_upstream_reset_before_answer_is_502_and_mid_body_cuts_client(tmp_path: Path) -> None:
    async def breaking(req: Request, transport: asyncio.Transport) -> None:
        if req.url == "/reset":
            transport.abort()
        else:
            transport.write(response(200, b"partial", [("Content-Length", "1000")]))
            await asyncio.sleep(0.05)
            transport.close()
    with running_proxy(tmp_path, {"monolith": breaking}) as run:
        reset = httpx.get(f"{run.url}/reset", timeout=5)
        with pytest.raises(httpx.RemoteProtocolError):
            httpx.get(f"{run.url}/dies", timeout=5)
        after = httpx.get(f"{run.url}/reset", timeout=5)
    assert reset.status_code == 502
    assert after.status_code == 502  # the proxy itself is fine


def test_service_falls_back_to_monolith_only_when_safe(tmp_path: Path) -> None:
    async def failing(req: Request, transport: asyncio.Transport) -> None:
        transport.write(response(503, b"down"))
    routes = CATALOG_ROUTE + "fallback = true\n"
    handlers = {"monolith": answer_with("monolith"), "catalog": failing}
    with running_proxy(tmp_path, handlers, routes) as run:
        get = httpx.get(f"{run.url}/api/products/1", timeout=5)
        post = httpx.post(f"{run.url}/api/products/1", content=b"{}", timeout=5)
        monolith_posts = [r for r in run.upstreams["monolith"].requests if r.method == "POST"]
        metrics = run.app.metrics_text()
    assert (get.status_code, get.text) == (200, "monolith")
    assert get.headers["x-strangler-route"] == "catalog;target=monolith;fallback=status_503"
    assert post.status_code == 503  # a POST that reached the service is never replayed
    assert monolith_posts == []
    assert 'strangler_fallbacks_total{route="catalog",reason="status_503"} 1' in metrics


def test_post_falls_back_when_no_byte_reached_the_service(tmp_path: Path) -> None:
    routes = CATALOG_ROUTE + "fallback = true\n"
    with running_proxy(tmp_path, {"monolith": answer_with("monolith")}, routes,
                       upstream_urls={"catalog": "http://127.0.0.1:9"}) as run:
        post = httpx.post(f"{run.url}/api/products/", content=b'{"a": 1}', timeout=5)
        seen = run.upstreams["monolith"].requests
    assert (post.status_code, post.text) == (200, "monolith")
    assert seen[0].body == b'{"a": 1}'


def test_pipelined_requests_are_answered_in_order(tmp_path: Path) -> None:
    async def echo_path(req: Request, transport: asyncio.Transport) -> None:
        if req.url == "/slow":
            await asyncio.sleep(0.1)
        transport.write(response(200, req.url.encode()))
    with running_proxy(tmp_path, {"monolith": echo_path}) as run:
        got = raw_exchange(run.port, b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n"
                           b"GET /fast HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert got.index(b"/slow") < got.index(b"/fast")


def test_large_bodies_stream_both_ways_with_bounded_memory(tmp_path: Path) -> None:
    size = 64 * 1024 * 1024
    chunk = b"z" * (1024 * 1024)

    async def big(req: Request, transport: asyncio.Transport) -> None:
        if req.method == "POST":
            transport.write(response(200, str(len(req.body) or run.upstreams["monolith"]
                                              .body_bytes).encode()))
            return
        transport.write(response(200, b"", [("Content-Length", str(size))]))
        for _ in range(size // len(chunk)):
            transport.write(chunk)
            while transport.get_write_buffer_size() > 4 * len(chunk):
                await asyncio.sleep(0.001)

    def upload() -> object:
        for _ in range(size // len(chunk)):
            yield chunk

    with running_proxy(tmp_path, {"monolith": big}) as run:
        run.upstreams["monolith"].keep_bodies = False
        before = _rss_kib()
        up = httpx.post(f"{run.url}/up", content=upload(), timeout=60)
        received = 0
        with httpx.stream("GET", f"{run.url}/down", timeout=60) as down:
            for part in down.iter_bytes():
                received += len(part)
        grew = _rss_kib() - before
    assert up.status_code == 200
    assert int(up.text) == size
    assert received == size
    assert grew < 48 * 1024, f"proxy memory grew by {grew} KiB for 64 MiB each way"


def _rss_kib(pid: int | None = None) -> int:
    for line in Path(f"/proc/{pid or 'self'}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def test_websocket_upgrade_passes_through_on_allowed_routes(tmp_path: Path) -> None:
    async def ws(req: Request, transport: asyncio.Transport) -> None:
        transport.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                        b"Connection: Upgrade\r\n\r\n")
        transport.write(b"server-frame")
    routes = """
[[routes]]
name = "live"
match = { path_prefix = "/ws/" }
websocket = true
"""
    with running_proxy(tmp_path, {"monolith": ws}, routes) as run, \
            socket.create_connection(("127.0.0.1", run.port), timeout=5) as sock:
        sock.sendall(b"GET /ws/chat HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\n"
                     b"Upgrade: websocket\r\nSec-WebSocket-Key: x\r\n"
                     b"Sec-WebSocket-Version: 13\r\n\r\n")
        got = b""
        while b"server-frame" not in got:
            got += sock.recv(1000)
        sock.sendall(b"client-frame")
        deadline = time.monotonic() + 5
        raw = run.upstreams["monolith"].raw_connections[0]
        while b"client-frame" not in raw and time.monotonic() < deadline:
            time.sleep(0.01)
    assert got.startswith(b"HTTP/1.1 101")
    assert b"upgrade: websocket" in raw.lower()
    assert raw.endswith(b"client-frame")


class RecordingSink(OfferSink):
    """Collects offers, like the shadow side's sink would queue them."""

    def __init__(self) -> None:
        self.offers: list[object] = []

    def offer(self, offer: object) -> bool:
        self.offers.append(offer)
        return True


def test_shadow_route_serves_monolith_and_offers_the_exchange_after_the_response(
        tmp_path: Path) -> None:
    async def echo(req: Request, transport: asyncio.Transport) -> None:
        transport.write(response(200, b"monolith:" + req.body))
    routes = CATALOG_ROUTE.replace('mode = "service"', 'mode = "shadow"') + \
        "shadow = { max_body_bytes = 8 }\n"
    sink = RecordingSink()
    with running_proxy(tmp_path, {"monolith": echo, "catalog": answer_with("catalog")}, routes,
                       sink=sink) as run:
        got = httpx.post(f"{run.url}/api/products/7?x=1", content=b"0123456789", timeout=5,
                         headers={"X-Request-ID": "r1", "Cookie": "a=1"})
        catalog_seen = len(run.upstreams["catalog"].requests)
        metrics = run.app.metrics_text()
    assert (got.text, got.headers["x-strangler-route"]) == ("monolith:0123456789",
                                                            "catalog;target=monolith")
    assert catalog_seen == 0  # the copy is the shadow side's job, not the forwarder's
    (offer,) = sink.offers
    assert offer.route == "catalog"
    assert offer.target == "catalog"
    request = offer.request  # type: ignore[attr-defined]
    assert (request.method, request.path, request.query) == ("POST", "/api/products/7", "x=1")
    assert (request.body, request.body_truncated, request.request_id) == (b"01234567", True, "r1")
    assert ("Cookie", "a=1") in request.headers
    primary = offer.primary  # type: ignore[attr-defined]
    assert (primary.status, primary.body, primary.body_truncated) == (200, b"monolith", True)
    whole = b"monolith:0123456789"  # hashed in full as it streamed past the cap
    assert (primary.digest, primary.size) == (hashlib.sha256(whole).hexdigest(), len(whole))
    assert primary.elapsed_ms != round(primary.elapsed_ms)  # not whole ms: same clock as the copy
    assert 'strangler_shadow_offers_total{route="catalog",result="accepted"} 1' in metrics


def test_a_failing_sink_never_hurts_the_client(tmp_path: Path) -> None:
    class Broken(OfferSink):
        def offer(self, offer: object) -> bool:
            raise RuntimeError("boom")
    routes = CATALOG_ROUTE.replace('mode = "service"', 'mode = "shadow"')
    with running_proxy(tmp_path, {"monolith": answer_with("m"), "catalog": answer_with("c")},
                       routes, sink=Broken()) as run:
        got = [httpx.get(f"{run.url}/api/products/1", timeout=5).status_code for _ in range(3)]
    assert got == [200, 200, 200]


def test_access_log_writes_one_json_line_per_request(tmp_path: Path,
                                                     capfd: pytest.CaptureFixture[str]) -> None:
    import json
    with running_proxy(tmp_path, {"monolith": answer_with("m")},
                       proxy='access_log = "json"') as run:
        httpx.get(f"{run.url}/logged?q=1", timeout=5, headers={"X-Request-ID": "log-1"})
    lines = [json.loads(x) for x in capfd.readouterr().err.splitlines() if x.startswith("{")]
    assert [(x["path"], x["status"], x["request_id"]) for x in lines] == \
        [("/logged", 200, "log-1")]


def test_a_head_that_never_ends_is_cut_off(tmp_path: Path) -> None:
    with running_proxy(tmp_path, {"monolith": answer_with("m")},
                       proxy="max_header_bytes = 2048") as run, \
            socket.create_connection(("127.0.0.1", run.port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n")
        closed = False
        try:
            for _ in range(400):  # 400 x 1 KiB of headers, never the empty line
                sock.sendall(b"X-Pad: " + b"p" * 1014 + b"\r\n")
        except (BrokenPipeError, ConnectionResetError):
            closed = True
        try:
            got = sock.recv(1000)  # a proxy that kept buffering would time out here
        except ConnectionResetError:
            got, closed = b"", True
        seen = run.upstreams["monolith"].bytes_received
    assert got.startswith(b"HTTP/1.1 431") or (closed and got == b"")
    assert seen == 0


def test_a_big_body_in_the_first_read_is_not_mistaken_for_a_big_head(tmp_path: Path) -> None:
    with running_proxy(tmp_path, {"monolith": answer_with("m")},
                       proxy="max_header_bytes = 2048") as run:
        body = b"b" * 500_000
        got = raw_exchange(run.port, b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 500000\r\n"
                           b"Connection: close\r\n\r\n" + body)
        received = run.upstreams["monolith"].requests[0].body
    assert got.startswith(b"HTTP/1.1 200")
    assert received == body


GIB = 1024 * 1024 * 1024


@pytest.mark.slow
def test_one_gigabyte_each_way_streams_with_flat_proxy_memory(tmp_path: Path) -> None:
    """1 GiB up and 1 GiB down through a ``strangler proxy`` process; its RSS stays flat."""
    import subprocess
    import sys
    import threading

    from proxy_harness import LoopThread, Upstream, config_text, free_port, stop_process_group

    chunk = memoryview(b"z" * (1024 * 1024))

    async def big(req: Request, transport: asyncio.Transport) -> None:
        if req.method == "POST":
            transport.write(response(200, str(upstream.body_bytes).encode()))
            return
        transport.write(response(200, b"", [("Content-Length", str(GIB))]))
        for _ in range(GIB // len(chunk)):
            transport.write(chunk)
            while transport.get_write_buffer_size() > 4 * len(chunk):
                await asyncio.sleep(0.0005)

    loop = LoopThread()
    upstream = Upstream("monolith", big, keep_bodies=False)
    loop.run(upstream.start())
    port, admin = free_port(), free_port()
    config = tmp_path / "strangler.toml"
    config.write_text(config_text({"monolith": upstream.url}).replace(
        'listen = "127.0.0.1:0"\nreload', f'listen = "127.0.0.1:{port}"\nreload', 1).replace(
        'listen = "127.0.0.1:0"\ntoken', f'listen = "127.0.0.1:{admin}"\ntoken', 1)
        .replace("read_timeout = 2", "read_timeout = 30"))
    proc = subprocess.Popen([sys.executable, "-m", "strangler.cli", "proxy", "--config",
                             str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            peak[0] = max(peak[0], _rss_kib(proc.pid))

    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the proxy did not start"
                time.sleep(0.05)
        raw_exchange(port, b"GET /warm HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n"
                     b"Connection: close\r\n\r\n")
        baseline = _rss_kib(proc.pid)
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", port), 10) as sock:
            sock.settimeout(30)
            sock.sendall(b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % GIB)
            for _ in range(GIB // len(chunk)):
                sock.sendall(chunk)
            up_answer = _read_response(sock, keep_body=True)
            sock.sendall(b"GET /down HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            down_bytes = _read_response(sock, keep_body=False)
        elapsed = time.monotonic() - started
    finally:
        done.set()
        stop_process_group(proc)
        loop.run(upstream.stop())
        loop.close()
    assert up_answer.endswith(str(GIB).encode())
    assert down_bytes == GIB
    grew = peak[0] - baseline
    assert peak[0] > 0  # the samples were taken
    assert baseline > 0
    assert grew < 32 * 1024, f"proxy RSS grew by {grew} KiB while streaming 1 GiB each way"
    assert elapsed < 60, f"2 GiB through the proxy took {elapsed:.1f}s"


def _read_response(sock: socket.socket, keep_body: bool) -> bytes | int:
    """Read one Content-Length response: its body (``keep_body``) or just its length."""
    head = b""
    while b"\r\n\r\n" not in head:
        part = sock.recv(65536)
        assert part, "connection closed in the response head"
        head += part
    head, _, rest = head.partition(b"\r\n\r\n")
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    received, kept = len(rest), [rest] if keep_body else []
    buffer = bytearray(1024 * 1024)
    while received < length:
        n = sock.recv_into(buffer)
        assert n, "connection closed in the response body"
        received += n
        if keep_body:
            kept.append(bytes(buffer[:n]))
    return b"".join(kept) if keep_body else received
