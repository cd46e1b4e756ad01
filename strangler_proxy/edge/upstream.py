"""The upstream side of the forwarding edge: keep-alive pools and upstream connections.

An :class:`UpstreamPool` holds the idle keep-alive connections to one upstream and bounds how
many are open at once (``max_connections``; further exchanges wait for a slot). An
:class:`UpstreamConnection` parses one upstream's responses with ``HttpResponseParser`` and
hands head, body and end to the exchange it serves (``forward.py``), one exchange at a time,
or relays raw bytes once a 101 turned it into a tunnel. :func:`build_pools` builds the pools
for a config and keeps unchanged ones across a reload.

Not here: what is sent upstream or back to the client (the request head, response re-framing,
fallback, timeouts: ``forward.py``) and the client side (``server.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections import deque
from typing import IO, Protocol

import httptools

from strangler_proxy.config import ProxyConfig, Upstream
from strangler_proxy.errors import PoolTimeout
from strangler_proxy.headers import RawHeaders
from strangler_proxy.metrics import Metrics


class Downstream(Protocol):
    """The client connection, as an upstream connection sees it (``server.ClientConnection``).

    The exchange hands it over in ``Exchange.attach``; a 101 turns it into the tunnel's far end.
    """

    batch: list[bytes] | None  # response bytes gathered for one write to the client

    def write(self, data: bytes) -> None: ...
    def flush(self) -> None: ...
    def pause(self, reason: str) -> None: ...
    def resume(self, reason: str) -> None: ...
    def close(self) -> None: ...
    def start_tunnel(self, conn: UpstreamConnection) -> None: ...


class ResponseReceiver(Protocol):
    """The exchange an upstream connection answers (``forward.Exchange``)."""

    method: str
    status: int
    plain_body: bool  # body bytes may go to the client's batch as they are
    finished: bool
    last_activity: float
    response_started: bool
    spool: IO[bytes] | None  # a buffered request body spooled to disk, pumped as we drain

    def pump(self) -> None: ...

    def response_head(self, status: int, reason: bytes, headers: RawHeaders) -> None: ...
    def response_body(self, chunk: bytes) -> None: ...
    def response_complete(self, tunnel: bool = False) -> None: ...
    def upstream_failed(self, kind: str, message: str) -> None: ...
    def upstream_closed(self) -> None: ...


def set_nodelay(transport: asyncio.BaseTransport) -> None:
    """Turn off Nagle on a TCP transport: heads and small bodies go out at once."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class UpstreamPool:
    """Keep-alive connections to one upstream, at most ``max_connections`` at a time."""

    def __init__(self, upstream: Upstream, loop: asyncio.AbstractEventLoop,
                 metrics: Metrics) -> None:
        self.upstream = upstream
        self.loop = loop
        self.clock = loop.time  # bound once: a stored callable is cheaper than a method lookup
        self.metrics = metrics
        self.idle: list[UpstreamConnection] = []
        self.open = 0
        self.waiters: deque[asyncio.Future[None]] = deque()
        self.closed = False
        self.origins = _origins(upstream)
        self.netloc = upstream.netloc.encode()  # parsed once: urlsplit is slow per request
        self.base_path = upstream.base_path.encode()
        self.host_line = b"Host: " + self.netloc + b"\r\n"
        self.rewrite_host = upstream.host == "rewrite"
        self.ssl: ssl.SSLContext | None = \
            ssl.create_default_context() if upstream.scheme == "https" else None

    def acquire_nowait(self) -> UpstreamConnection | None:
        """An idle, healthy connection, or None."""
        while self.idle:
            conn = self.idle.pop()
            if not conn.closed:
                return conn
        return None

    async def connect(self) -> UpstreamConnection:
        """A new connection (waits for a free slot first); raises OSError or TimeoutError."""
        if self.open >= self.upstream.max_connections:
            try:
                async with asyncio.timeout(self.upstream.pool_timeout):
                    while self.open >= self.upstream.max_connections:
                        waiter = self.loop.create_future()
                        self.waiters.append(waiter)
                        await waiter
                        idle = self.acquire_nowait()
                        if idle is not None:
                            return idle
            except TimeoutError:
                raise PoolTimeout from None
        self.open += 1
        try:
            async with asyncio.timeout(self.upstream.connect_timeout):
                _, conn = await self.loop.create_connection(
                    lambda: UpstreamConnection(self), self.upstream.hostname,
                    self.upstream.port, ssl=self.ssl)
        except BaseException:
            self.open -= 1
            self._wake()
            raise
        return conn

    def release(self, conn: UpstreamConnection) -> None:
        """Return a connection after a complete exchange (closed ones just free their slot)."""
        if conn.closed or self.closed or not conn.reusable:
            conn.close()
        else:
            self.idle.append(conn)
        if self.waiters:
            self._wake()

    def forget(self, conn: UpstreamConnection) -> None:
        """A connection closed: free its slot."""
        self.open -= 1
        with contextlib.suppress(ValueError):
            self.idle.remove(conn)
        self._wake()

    def _wake(self) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def close(self) -> None:
        """Close idle connections now; busy ones close when their exchange ends."""
        self.closed = True
        for conn in list(self.idle):
            conn.close()
        self.idle.clear()


def _origins(upstream: Upstream) -> list[bytes]:
    netloc = upstream.netloc.encode()
    out = [f"{upstream.scheme}://".encode() + netloc]
    if upstream.port in (80, 443) and b":" not in netloc:
        out.append(f"{upstream.scheme}://{upstream.hostname}:{upstream.port}".encode())
    return out


class UpstreamConnection(asyncio.Protocol):
    """One keep-alive connection to an upstream, serving one exchange at a time."""

    # The exchange's client, set together with ``exchange`` by ``Exchange.attach`` and read
    # only while ``exchange`` is set; kept apart so this side never reaches through the exchange.
    client: Downstream

    def __init__(self, pool: UpstreamPool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.exchange: ResponseReceiver | None = None
        self.closed = False
        self.reusable = True
        self.tunnel: Downstream | None = None
        self.reason = b""
        self.headers: RawHeaders = []
        self.replace_parser = False
        self.head_read = 0  # bytes read while a response head is incomplete (set by attach)
        self.head_limit = 65536  # proxy.max_response_header_bytes (set by attach)
        self.status = 0  # of the response being parsed

    # asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        set_nodelay(transport)

    def data_received(self, data: bytes) -> None:
        if self.tunnel is not None:
            self.tunnel.write(data)
            return
        exchange = self.exchange
        if exchange is None:  # an idle connection should not speak: drop it
            self.close()
            return
        exchange.last_activity = self.pool.clock()
        if self.replace_parser:
            self.parser = httptools.HttpResponseParser(self)
            self.replace_parser = False
        client = self.client
        client.batch = []  # one write to the client per read from the upstream
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            client.flush()
            self._start_tunnel(data[upgrade.args[0]:])
        except httptools.HttpParserError as exc:
            self.pool.metrics.upstream_error(self.pool.upstream.name, "protocol")
            if self.exchange is not None:
                self.exchange.upstream_failed("protocol", f"invalid response: {exc}")
            self.close()
        else:
            if not exchange.response_started and not exchange.finished:
                self._bound_head(exchange, len(data))
        finally:
            client.flush()

    def _bound_head(self, exchange: ResponseReceiver, size: int) -> None:
        # A head still incomplete after this read: bound what it may buffer (llhttp and
        # httptools keep a partial header in memory), like nginx's proxy_buffer_size.
        self.head_read += size
        limit = self.head_limit
        if self.head_read > limit:
            self.pool.metrics.upstream_error(self.pool.upstream.name, "protocol")
            exchange.upstream_failed("protocol", f"the response head is larger than "
                                     f"max_response_header_bytes ({limit})")
            self.abort()

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.forget(self)
        if self.tunnel is not None:
            self.tunnel.close()
            self.tunnel = None
            return
        exchange = self.exchange
        if exchange is not None:
            self.exchange = None
            exchange.upstream_closed()

    def pause_writing(self) -> None:
        if self.exchange is not None:
            self.client.pause("upload")
        elif self.tunnel is not None:
            self.tunnel.pause("upload")

    def resume_writing(self) -> None:
        if self.exchange is not None:
            if self.exchange.spool is not None:
                self.exchange.pump()
            self.client.resume("upload")
        elif self.tunnel is not None:
            self.tunnel.resume("upload")

    # httptools callbacks
    def on_message_begin(self) -> None:
        if self.exchange is None:
            # Bytes after the end of a response, in the same read: a next response nobody
            # asked for. The connection cannot be trusted for the next request: drop it.
            self.reusable = False
            self.close()

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.status = self.parser.get_status_code()  # on_message_complete reads it
        headers = self.headers
        self.headers = []
        if 100 <= status < 200 and status != 101:
            return  # interim (we answer Expect ourselves): skip it
        if self.exchange is not None:
            if not self.parser.should_keep_alive():
                self.reusable = False
            self.exchange.response_head(status, self.reason, headers)
            if self.exchange is not None and self.exchange.method == "HEAD":
                # llhttp cannot be told the request was HEAD; a HEAD answer has no body
                # whatever its Content-Length says, so end here and use a fresh parser next.
                self.replace_parser = True
                self.exchange.response_complete()

    def on_body(self, body: bytes) -> None:
        exchange = self.exchange
        if exchange is None:
            return
        if exchange.plain_body and not exchange.finished:
            batch = self.client.batch  # Exchange.response_body's common case, inlined
            if batch is not None:
                batch.append(body)
                return
        exchange.response_body(body)

    def on_message_complete(self) -> None:
        status = self.status  # of this message: on_headers_complete always came first
        if 100 <= status < 200:
            return  # interim, or 101 whose tunnel starts in data_received
        if self.exchange is not None:
            self.exchange.response_complete()

    # our API
    def write(self, data: bytes) -> None:
        """Send bytes to the upstream."""
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    def close(self) -> None:
        """Close the connection (idempotent); the pool never hands it out again."""
        self.reusable = False
        self.closed = True
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def abort(self) -> None:
        """Drop the connection without flushing."""
        self.reusable = False
        if self.transport is not None:
            self.transport.abort()

    def _start_tunnel(self, rest: bytes) -> None:
        exchange = self.exchange
        if exchange is None or exchange.status != 101:
            self.close()
            return
        client = self.client
        self.exchange = None
        exchange.response_complete(tunnel=True)
        self.tunnel = client
        client.start_tunnel(self)
        if rest:
            client.write(rest)


def build_pools(config: ProxyConfig, loop: asyncio.AbstractEventLoop, metrics: Metrics,
                old: dict[str, UpstreamPool] | None = None) -> dict[str, UpstreamPool]:
    """Pools for the config's upstreams, reusing unchanged ones from ``old``."""
    pools: dict[str, UpstreamPool] = {}
    for name, upstream in config.upstreams.items():
        previous = (old or {}).get(name)
        pools[name] = previous if previous is not None and previous.upstream == upstream \
            else UpstreamPool(upstream, loop, metrics)
    for name, pool in (old or {}).items():
        if pools.get(name) is not pool:
            pool.close()
    return pools
