"""Wire behaviour the issue-12 review found, each checked with raw bytes on real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import tempfile
import time
from pathlib import Path

import httptools
import pytest

from tests.strangler_proxy.proxy_harness import (
    Request,
    answer_with,
    raw_exchange,
    response,
    running_proxy,
)


class EarlyAnswerUpstream(asyncio.Protocol):
    """Answers 401 as soon as a request head is complete, before reading any body (as Django
    does for 401/404), and records every byte; ``heads`` counts the request heads it saw."""

    seen: list[bytes]

    def __init__(self, seen: list[bytes]) -> None:
        self.seen = seen
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.seen.append(data)
        before = self.buffer.count(b"\r\n\r\n")
        self.buffer += data
        for _ in range(self.buffer.count(b"\r\n\r\n") - before):
            self.transport.write(b"HTTP/1.1 401 X\r\nContent-Length: 0\r\n\r\n")  # type: ignore[attr-defined]


class _Requests:
    """Parse recorded upstream bytes the way a conforming server reads them."""

    def __init__(self) -> None:
        self.done: list[tuple[bytes, bytes]] = []
        self.url = b""
        self.body = b""

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.done.append((self.url, self.body))
        self.url = self.body = b""


def requests_in(raw: bytes) -> list[tuple[bytes, bytes]]:
    """(url, body) of each request in ``raw``, as an upstream parses them."""
    reader = _Requests()
    parser = httptools.HttpRequestParser(reader)
    while raw:
        try:
            parser.feed_data(raw)
            break
        except httptools.HttpParserUpgrade as upgrade:
            raw = raw[upgrade.args[0]:]
            parser = httptools.HttpRequestParser(reader)
    return reader.done


HIDDEN = b"GET /hidden HTTP/1.1\r\nHost: a\r\n\r\n"


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_upgrade_with_a_body_on_a_plain_route_forwards_the_body_as_a_body(
        tmp_path: Path, framing: str) -> None:
    # given an upstream that answers before reading bodies
    seen: list[bytes] = []
    with running_proxy(tmp_path, {"monolith": answer_with("m")}) as proxy:
        async def start() -> asyncio.Server:
            return await asyncio.get_running_loop().create_server(
                lambda: EarlyAnswerUpstream(seen), "127.0.0.1", 0)
        server = proxy.loop.run(start())
        port = server.sockets[0].getsockname()[1]
        proxy.config_path.write_text(proxy.config_path.read_text().replace(
            f"127.0.0.1:{proxy.upstreams['monolith'].port}", f"127.0.0.1:{port}"))
        assert proxy.loop.call(proxy.app.reload)[0]
        body = HIDDEN if framing == "content-length" else \
            b"%x\r\n%s\r\n0\r\n\r\n" % (len(HIDDEN), HIDDEN)
        frame = b"Content-Length: %d" % len(HIDDEN) if framing == "content-length" \
            else b"Transfer-Encoding: chunked"
        # when a client sends Upgrade + a body, then a second request on the same connection
        request = (b"POST /x HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                   b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n"
                   + frame + b"\r\n\r\n" + body + b"GET /next HTTP/1.1\r\nHost: a\r\n"
                   b"Connection: close\r\n\r\n")
        got = raw_exchange(proxy.port, request)
        proxy.loop.call(server.close)
    # then the upstream reads exactly the two requests, the first with its body intact
    reads = requests_in(b"".join(seen))
    assert reads == [(b"/x", HIDDEN), (b"/next", b"")]
    assert got.count(b"HTTP/1.1 401") == 2
    assert b"/hidden" not in b"".join(seen).replace(HIDDEN, b"")


def test_a_request_without_host_is_refused_for_http11_only(tmp_path: Path) -> None:
    with running_proxy(tmp_path, {"monolith": answer_with("m")}) as run:
        http11 = raw_exchange(run.port, b"GET / HTTP/1.1\r\n\r\n")
        http10 = raw_exchange(run.port, b"GET / HTTP/1.0\r\n\r\n")
        seen = [r.url for r in run.upstreams["monolith"].requests]
    assert http11.startswith(b"HTTP/1.1 400 ")
    assert http10.startswith(b"HTTP/1.1 200 ")
    assert seen == ["/"]


def test_connection_naming_host_does_not_strip_host(tmp_path: Path) -> None:
    with running_proxy(tmp_path, {"monolith": answer_with("m")}) as run:
        got = raw_exchange(run.port, b"GET / HTTP/1.1\r\nHost: shop.example\r\n"
                           b"Connection: close, Host, X-Hop\r\nX-Hop: 1\r\n\r\n")
        request = run.upstreams["monolith"].requests[0]
    assert got.startswith(b"HTTP/1.1 200 ")
    assert request.header("Host") == "shop.example"
    assert request.header("X-Hop") is None


@pytest.mark.parametrize(("raw", "status"), [
    (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
     b"3\r\nabc\r\n0\r\n\r\n", b"501"),
    (b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", b"405"),
    (b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", b"400"),
    (b"GET / HTTP/0.9\r\nHost: a\r\n\r\n", b"400"),
])
def test_what_cannot_be_forwarded_faithfully_is_refused(tmp_path: Path, raw: bytes,
                                                       status: bytes) -> None:
    with running_proxy(tmp_path, {"monolith": answer_with("m")}) as run:
        got = raw_exchange(run.port, raw)
        seen = run.upstreams["monolith"].bytes_received
    assert got.startswith(b"HTTP/1.1 " + status), got[:60]
    assert seen == 0


def test_an_http09_request_line_is_never_forwarded(tmp_path: Path) -> None:
    # llhttp waits for a version that never comes; the header timeout closes the connection
    with running_proxy(tmp_path, {"monolith": answer_with("m")},
                       proxy="client_header_timeout = 0.5") as run:
        got = raw_exchange(run.port, b"GET /\r\n", timeout=5)
        seen = run.upstreams["monolith"].bytes_received
    assert seen == 0
    assert got == b"" or got.startswith((b"HTTP/1.1 400 ", b"HTTP/1.1 408 "))


def test_junk_after_a_pipelined_request_gets_an_answer_after_it(tmp_path: Path) -> None:
    with running_proxy(tmp_path, {"monolith": answer_with("m")}) as run:
        got = raw_exchange(run.port, b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n\x01junk\r\n\r\n")
    assert got.startswith(b"HTTP/1.1 200 ")
    assert got.count(b"HTTP/1.1 400 ") == 1
    assert got.index(b"HTTP/1.1 400") > got.index(b"HTTP/1.1 200")


def test_routing_uses_the_normalised_path(tmp_path: Path) -> None:
    routes = ('[[routes]]\nname = "svc"\nmatch = { path_prefix = "/svc/" }\n'
              'mode = "service"\ntarget = "svc"\n')
    with running_proxy(tmp_path, {"monolith": answer_with("m"), "svc": answer_with("s")},
                       routes=routes) as run:
        dots = raw_exchange(run.port, b"GET /svc/../x HTTP/1.1\r\nHost: a\r\n"
                            b"Connection: close\r\n\r\n")
        escaped = raw_exchange(run.port, b"GET /%73vc/x?q=%2F HTTP/1.1\r\nHost: a\r\n"
                               b"Connection: close\r\n\r\n")
        monolith = [r.url for r in run.upstreams["monolith"].requests]
        service = [r.url for r in run.upstreams["svc"].requests]
    assert dots.endswith(b"m")
    assert escaped.endswith(b"s")
    assert monolith == ["/x"]
    assert service == ["/svc/x?q=%2F"]


def test_extra_bytes_from_an_upstream_do_not_poison_the_next_request(tmp_path: Path) -> None:
    calls = []

    async def sloppy(req: Request, transport: asyncio.Transport) -> None:
        calls.append(req.url)
        # a response with three bytes too many, the start of a response nobody asked for
        transport.write(response(200, b"ok") + (b"HTT" if len(calls) == 1 else b""))

    with running_proxy(tmp_path, {"monolith": sloppy}) as run:
        first = raw_exchange(run.port, b"POST /1 HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n"
                             b"Connection: close\r\n\r\n")
        second = raw_exchange(run.port, b"POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n"
                              b"Connection: close\r\n\r\nx")
    assert first.startswith(b"HTTP/1.1 200 ")
    assert second.startswith(b"HTTP/1.1 200 "), second[:80]


def test_an_oversized_upstream_head_is_a_502(tmp_path: Path) -> None:
    async def huge(req: Request, transport: asyncio.Transport) -> None:
        transport.write(b"HTTP/1.1 200 X\r\nX-Big: ")
        for _ in range(64):  # 4 MiB of one header value, never ending
            transport.write(b"a" * 65536)
            await asyncio.sleep(0)

    with running_proxy(tmp_path, {"monolith": huge}) as run:
        got = raw_exchange(run.port, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert got.startswith(b"HTTP/1.1 502 ")
    assert b"max_response_header_bytes" in got


def test_waiting_for_a_pooled_connection_is_bounded(tmp_path: Path) -> None:
    async def slow(req: Request, transport: asyncio.Transport) -> None:
        await asyncio.sleep(1.5 if req.url == "/slow" else 0)
        transport.write(response(200, b"ok"))

    with running_proxy(tmp_path, {"monolith": slow}) as run:
        run.config_path.write_text(run.config_path.read_text().replace(
            "read_timeout = 2\n", "read_timeout = 2\nmax_connections = 1\npool_timeout = 0.3\n"))
        assert run.loop.call(run.app.reload)[0]
        with socket.create_connection(("127.0.0.1", run.port), timeout=5) as hog:
            hog.sendall(b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
            time.sleep(0.2)
            started = time.monotonic()
            waited = raw_exchange(run.port, b"GET /fast HTTP/1.1\r\nHost: a\r\n\r\n")
            elapsed = time.monotonic() - started
            assert hog.recv(100).startswith(b"HTTP/1.1 200 ")
    assert waited.startswith(b"HTTP/1.1 504 ")
    assert b"pool_timeout" in waited
    assert elapsed < 1.4  # answered at the pool timeout, not when the slow request ended


def test_past_max_client_connections_a_connection_gets_503(tmp_path: Path) -> None:
    with running_proxy(tmp_path, {"monolith": answer_with("m")},
                       proxy="max_client_connections = 3") as run:
        held = [socket.create_connection(("127.0.0.1", run.port), timeout=5) for _ in range(3)]
        try:
            time.sleep(0.2)
            refused = raw_exchange(run.port, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        finally:
            for sock in held:
                sock.close()
        time.sleep(0.2)
        ok = raw_exchange(run.port, b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert refused.startswith(b"HTTP/1.1 503 ")
    assert b"max_client_connections" in refused
    assert ok.startswith(b"HTTP/1.1 200 ")


def _closed_after(sock: socket.socket, send: bytes = b"") -> tuple[float, bytes]:
    """Seconds until the proxy closes ``sock`` (after sending ``send``), and what it said."""
    started = time.monotonic()
    if send:
        sock.sendall(send)
    got = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            got += chunk
    return time.monotonic() - started, got


SLOW = ("client_header_timeout = 0.6\nkeepalive_timeout = 0.8\nclient_body_min_rate = 1000\n")


def test_slow_heads_slow_bodies_and_idle_connections_are_closed_on_time(tmp_path: Path) -> None:
    with running_proxy(tmp_path, {"monolith": answer_with("m")}, proxy=SLOW) as run:
        def connect() -> socket.socket:
            return socket.create_connection(("127.0.0.1", run.port), timeout=10)
        with connect() as silent:
            silent_s, silent_got = _closed_after(silent)
        with connect() as head:
            head_s, head_got = _closed_after(head, b"GET / HTTP/1.1\r\nHost: a\r\n")
        with connect() as body:
            body_s, body_got = _closed_after(
                body, b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\nxx")
        with connect() as idle:
            idle.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            idle_s, idle_got = _closed_after(idle)
        seen = [r.method for r in run.upstreams["monolith"].requests]
    assert 0.5 < silent_s < 2.5
    assert silent_got == b""
    assert 0.5 < head_s < 2.5
    assert head_got.startswith(b"HTTP/1.1 408 ")
    assert 0.5 < body_s < 2.5
    assert body_got.startswith(b"HTTP/1.1 408 ")
    assert 0.7 < idle_s < 2.7
    assert idle_got.startswith(b"HTTP/1.1 200 ")
    assert seen == ["GET"]  # the unfinished POST never took an upstream connection


def test_buffered_bodies_past_the_memory_cap_are_spooled_and_arrive_intact(
        tmp_path: Path) -> None:
    body = bytes(range(256)) * 4000  # ~1 MB
    with running_proxy(tmp_path, {"monolith": answer_with("m")},
                       proxy="request_buffer_bytes = 4096") as run:
        got = raw_exchange(run.port, b"POST /up HTTP/1.1\r\nHost: a\r\nConnection: close\r\n"
                           b"Content-Length: %d\r\n\r\n" % len(body) + body)
        chunked = raw_exchange(run.port, b"POST /up HTTP/1.1\r\nHost: a\r\nConnection: close\r\n"
                               b"Transfer-Encoding: chunked\r\n\r\n%x\r\n" % len(body)
                               + body + b"\r\n0\r\n\r\n")
        received = [r.body for r in run.upstreams["monolith"].requests]
    assert got.startswith(b"HTTP/1.1 200 ")
    assert chunked.startswith(b"HTTP/1.1 200 ")
    assert received == [body, body]


def test_a_route_may_stream_its_uploads_unbuffered(tmp_path: Path) -> None:
    routes = ('[[routes]]\nname = "upload"\nmatch = { path_prefix = "/up" }\n'
              'buffer_request = false\n')
    with running_proxy(tmp_path, {"monolith": answer_with("m")}, routes=routes) as run, \
            socket.create_connection(("127.0.0.1", run.port), timeout=5) as sock:
        sock.sendall(b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
        deadline = time.monotonic() + 5
        while run.upstreams["monolith"].body_bytes < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        streamed = run.upstreams["monolith"].body_bytes
        sock.sendall(b"defghij")
        assert sock.recv(1000).startswith(b"HTTP/1.1 200 ")
    assert streamed == 3  # the first bytes reached the upstream before the body was complete


def test_a_client_cannot_send_the_headers_the_proxy_owns(tmp_path: Path) -> None:
    with running_proxy(tmp_path, {"monolith": answer_with("m")}) as run:
        got = raw_exchange(run.port, b"POST /api/cart/items/ HTTP/1.1\r\nHost: a\r\n"
                           b"X-Strangler-Shadow: 1\r\nx-strangler-shadow: v1;t=1;sig=00\r\n"
                           b"X-Strangler-Route: fake\r\nContent-Length: 2\r\n"
                           b"Connection: close\r\n\r\n{}")
        request = run.upstreams["monolith"].requests[0]
    assert got.startswith(b"HTTP/1.1 200 ")
    assert [n for n, _ in request.headers if n.lower().startswith("x-strangler-")] == []


def test_connection_upgrade_without_an_upgrade_header_is_a_plain_request(
        tmp_path: Path) -> None:
    # llhttp does not upgrade without an Upgrade header: the body is parsed as usual
    with running_proxy(tmp_path, {"monolith": answer_with("m")}) as run:
        got = raw_exchange(run.port, b"POST /x HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\n"
                           b"Content-Length: 5\r\n\r\nhello", read_until_close=False)
        bodies = [r.body for r in run.upstreams["monolith"].requests]
    assert got.startswith(b"HTTP/1.1 200 ")
    assert bodies == [b"hello"]


def test_a_client_that_leaves_mid_upload_leaves_no_spool_file_behind(tmp_path: Path,
                                                                     monkeypatch) -> None:  # type: ignore[no-untyped-def]
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool_dir))
    with running_proxy(tmp_path, {"monolith": answer_with("m")},
                       proxy="request_buffer_bytes = 1024") as run:
        with socket.create_connection(("127.0.0.1", run.port), timeout=5) as sock:
            sock.sendall(b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n"
                         + b"x" * 50_000)
            time.sleep(0.3)
        time.sleep(0.3)
        seen = run.upstreams["monolith"].bytes_received
        opened = [link for link in map(_fd_target, Path("/proc/self/fd").iterdir())
                  if link.startswith(str(spool_dir))]
    assert seen == 0  # the incomplete body never took an upstream connection
    assert opened == []


def _fd_target(fd: Path) -> str:
    with contextlib.suppress(OSError):
        return os.readlink(fd)
    return ""
