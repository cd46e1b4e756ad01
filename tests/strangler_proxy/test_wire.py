"""Wire behaviour the issue-12 review found, each checked with raw bytes on real sockets."""

from __future__ import annotations

import asyncio
import socket
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
