"""The forwarding edge: an asyncio + httptools HTTP/1.1 listener and keep-alive upstream pools.

Callback-driven on purpose (no coroutine per request): the benchmark in ``bench/proxy``
showed that every await on the hot path costs throughput, so a request is a small state
machine driven by parser callbacks on both sides:

    client bytes ─▶ ClientConnection (HttpRequestParser) ─ Exchange ─▶ UpstreamConnection
    client ◀─ response head/body re-framed ◀─ (HttpResponseParser) ◀─ upstream bytes

Bodies stream both ways chunk by chunk; backpressure is the transports' own: when one side's
write buffer fills, the other side stops reading (``pause_reading``), so memory stays flat for
any body size. Framing is always re-derived (Content-Length passed through after llhttp
validated it, chunked re-encoded), so a smuggled framing never reaches an upstream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import ssl
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import httptools

from strangler_proxy.config import IDEMPOTENT_METHODS, MONOLITH, ProxyConfig, Upstream
from strangler_proxy.exchange import ShadowOffer, ShadowSink, offer_from_message
from strangler_proxy.headers import (
    REASONS,
    REQUEST_DROP,
    RESPONSE_DROP,
    VIA,
    RawHeaders,
    client_address,
    connection_tokens_of,
    error_response,
    forwarded_headers,
    is_trusted,
    new_request_id_bytes,
    rewrite_location,
    sane_request_id,
    serialize_lines,
)
from strangler_proxy.metrics import Metrics
from strangler_proxy.routing import Decision, RouteTable

HEAD_SLACK = 256 * 1024  # see ClientConnection.data_received
FALLBACK_BODY_LIMIT = 64 * 1024  # request bodies kept for a possible replay to the monolith
NO_BODY_STATUSES = frozenset({204, 304})
# Status lines by code: the reason phrase is informational (RFC 9112 §4), so the proxy sends
# the standard one rather than relaying the upstream's, which saves a parser callback.
STATUS_LINES = {code: b"HTTP/1.1 %d %s\r\n" % (code, reason) for code, reason in REASONS.items()}
REQUEST_DROP_HOST = REQUEST_DROP | {b"host"}
# Method names as str without a decode per request (others are decoded as they come).
METHODS = {m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE",
                                    "OPTIONS", "TRACE", "CONNECT")}


class NullSink:
    """A shadow sink that accepts nothing (used until the shadow side provides one)."""

    def offer(self, offer: ShadowOffer) -> bool:
        """Drop the offer."""
        return False

    def admit(self, route: str, method: str) -> bool:
        """Copy nothing."""
        return False


def _admit_all(route: str, method: str) -> bool:
    return True


@dataclass(slots=True)
class ProxyState:
    """What every connection reads per request; ``table`` is swapped atomically on reload."""

    table: RouteTable
    pools: dict[str, UpstreamPool]
    metrics: Metrics
    sink: ShadowSink = field(default_factory=NullSink)
    loop: asyncio.AbstractEventLoop | None = None
    inflight: set[Exchange] = field(default_factory=set)
    # the sink's fast entry points, or adapters to ``offer`` for a sink without them
    shadow_admit: Callable[[str, str], bool] = field(init=False)
    shadow_offer: Callable[[tuple[Any, ...]], bool] = field(init=False)

    def __post_init__(self) -> None:
        sink = self.sink
        self.shadow_admit = getattr(sink, "admit", None) or _admit_all
        raw = getattr(sink, "offer_raw", None)
        self.shadow_offer = raw if raw is not None else \
            (lambda message: bool(sink.offer(offer_from_message(message))))

    @property
    def config(self) -> ProxyConfig:
        """The config of the active table."""
        return self.table.config


# -- upstream side --------------------------------------------------------------------------


class UpstreamPool:
    """Keep-alive connections to one upstream, at most ``max_connections`` at a time."""

    def __init__(self, upstream: Upstream, loop: asyncio.AbstractEventLoop,
                 metrics: Metrics) -> None:
        self.upstream = upstream
        self.loop = loop
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
        while self.open >= self.upstream.max_connections:
            waiter = self.loop.create_future()
            self.waiters.append(waiter)
            await waiter
            idle = self.acquire_nowait()
            if idle is not None:
                return idle
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

    def __init__(self, pool: UpstreamPool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.exchange: Exchange | None = None
        self.closed = False
        self.reusable = True
        self.tunnel: ClientConnection | None = None
        self.reason = b""
        self.headers: RawHeaders = []
        self.replace_parser = False

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
        exchange.last_activity = exchange.client.loop.time()
        if self.replace_parser:
            self.parser = httptools.HttpResponseParser(self)
            self.replace_parser = False
        client = exchange.client
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
        finally:
            client.flush()

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
            self.exchange.client.pause("upload")
        elif self.tunnel is not None:
            self.tunnel.pause("upload")

    def resume_writing(self) -> None:
        if self.exchange is not None:
            self.exchange.client.resume("upload")
        elif self.tunnel is not None:
            self.tunnel.resume("upload")

    # httptools callbacks
    # No on_message_begin: state is reset after use, which saves a callback per response.
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
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
            batch = exchange.client.batch  # Exchange.response_body's common case, inlined
            if batch is not None:
                batch.append(body)
                return
        exchange.response_body(body)

    def on_message_complete(self) -> None:
        status = self.parser.get_status_code()
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
        """Close the connection (idempotent)."""
        self.reusable = False
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
        client = exchange.client
        self.exchange = None
        exchange.response_complete(tunnel=True)
        self.tunnel = client
        client.start_tunnel(self)
        if rest:
            client.write(rest)


# -- client side ------------------------------------------------------------------------------


class Exchange:
    """One request/response through the proxy: the glue between the two parsers.

    Most attributes are class-level defaults so that creating one costs a handful of stores
    (the per-request constructor showed up in the benchmark profile).
    """

    decision: Decision | None = None
    upstream = MONOLITH
    conn: UpstreamConnection | None = None
    head_bytes = b""
    request_done = False
    chunked_request = False
    started = False
    status = 0
    response_started = False
    plain_body = False  # response started, not chunked, not teed: body bytes pass as they are
    chunked_response = False
    close_delimited = False
    keep_alive = True
    http11 = True
    start = 0.0
    last_activity = 0.0
    rid = b""  # the request id, as sent upstream and to the client
    tee_request: bytearray | None = None
    tee_response: bytearray | None = None
    tee_truncated = False
    response_truncated = False
    body_bytes = 0
    replay_body: list[bytes] | None = None
    replayable = True
    bytes_to_service = False
    reused = False
    retried = False
    finished = False
    websocket = False
    fallen_back = ""
    response_headers: RawHeaders = []  # noqa: RUF012 - replaced, never mutated
    host = b""
    path = "/"
    raw_query = b""
    tokens: frozenset[bytes] = frozenset()

    def __init__(self, client: ClientConnection, method: bytes, url: bytes,
                 headers: RawHeaders, lowers: list[bytes], hmap: dict[bytes, bytes],
                 blocks: dict[bool, bytes]) -> None:
        self.client = client
        self.state = state = client.state
        self.table = state.table  # in-flight requests keep the table they started on
        self.method_bytes = method
        self.method = METHODS.get(method) or method.decode("ascii")
        self.url = url
        self.headers = headers
        self.lowers = lowers
        self.hmap = hmap  # shared with other requests with the same headers: never mutated
        self.blocks = blocks  # forwarded header lines by host rewrite, filled by build_head
        self.pending: list[bytes] = []

    def loop_time(self) -> float:
        """Monotonic time of the event loop."""
        return self.client.loop.time()

    @property
    def request_id(self) -> str:
        """The request id (the client's ``X-Request-ID`` when sane, else a generated one)."""
        return self.rid.decode("ascii")

    @property
    def query(self) -> str:
        """The query string, without the ``?``."""
        return self.raw_query.decode("latin-1")

    # -- request side --------------------------------------------------------------------

    def prepare(self) -> None:
        """Route the request and build the upstream head."""
        client = self.client
        hmap = self.hmap
        connection = hmap.get(b"connection")
        if connection is not None:
            self.tokens = connection_tokens_of(connection)
        rid = hmap.get(b"x-request-id")
        self.rid = rid if rid is not None and sane_request_id(rid) else new_request_id_bytes()
        url = self.url
        if not url.startswith(b"/"):
            if url == b"*":
                url = b"/"
            else:  # absolute-form: keep path and query only
                rest = url.split(b"://", 1)[-1]
                slash = rest.find(b"/")
                url = rest[slash:] if slash >= 0 else b"/"
        raw_path, _, self.raw_query = url.partition(b"?")
        self.path = raw_path.decode("latin-1")
        self.host = hmap.get(b"host", b"")
        ip = client.client_ip
        if client.trusted:
            ip = client_address(client.peer, hmap.get(b"x-forwarded-for"), True,
                                self.table.config.proxy.trusted_proxies)
        decision = self.table.decide(self.method, self.path, hmap, ip)
        self.decision = decision
        self.upstream = decision.upstream
        self.websocket = decision.route.websocket and \
            hmap.get(b"upgrade", b"").lower() == b"websocket"
        if decision.shadow and self._admit_shadow(decision.route.name):
            self.tee_request = bytearray()
        if decision.fallback:
            self.replay_body = []
        self.head_bytes = self.build_head(url, decision.upstream)

    def build_head(self, url: bytes, upstream_name: str) -> bytes:
        """The request head for ``upstream_name``, with forwarded and framing headers.

        Hop-by-hop, framing, forwarding, ``Expect``, ``Via`` and ``X-Request-ID`` headers of
        the client are dropped (see :data:`REQUEST_DROP`) because the proxy adds its own.
        """
        client = self.client
        pool = self.state.pools[upstream_name]
        host = self.host
        rewrite = pool.rewrite_host or not host
        hmap = self.hmap
        if client.trusted:
            forwarded = serialize_lines(forwarded_headers(
                self.headers, client.peer, True, host or pool.netloc))
        else:
            via = hmap.get(b"via")
            forwarded = b"%sX-Forwarded-Host: %s\r\nVia: %s\r\n" % (
                client.forwarded_prefix, host or pool.netloc,
                via + b", " + VIA if via else VIA)
        parts = [b"%s %s HTTP/1.1\r\n" % (self.method_bytes, pool.base_path + url
                                             if pool.base_path else url)]
        if rewrite:
            parts.append(pool.host_line)
        block = self.blocks.get(rewrite)
        if block is None:
            drop = REQUEST_DROP_HOST if rewrite else REQUEST_DROP
            tokens = self.tokens
            if tokens:
                drop = drop | tokens
            lines = [b": ".join(header)
                     for header, lower in zip(self.headers, self.lowers, strict=True)
                     if lower not in drop]
            # one join per head ("%s: %s" formatting per header cost twice as much)
            block = self.blocks[rewrite] = b"\r\n".join(lines) + b"\r\n" if lines else b""
        parts += (block, forwarded, b"X-Request-ID: ", self.rid, b"\r\n")
        if self.websocket:
            parts.append(b"Connection: Upgrade\r\nUpgrade: websocket\r\n")
        length = hmap.get(b"content-length")
        if length is not None:
            parts += (b"Content-Length: ", length, b"\r\n\r\n")
        elif b"transfer-encoding" in hmap:
            self.chunked_request = True
            parts.append(b"Transfer-Encoding: chunked\r\n\r\n")
        else:
            parts.append(b"\r\n")
        return b"".join(parts)

    def begin(self) -> None:
        """Start forwarding: take a pooled connection or open one."""
        self.started = True
        self.start = self.last_activity = self.client.loop.time()
        state = self.state
        pool = state.pools[self.upstream]
        conn = pool.idle.pop() if pool.idle else None  # acquire_nowait, inlined
        if conn is not None and conn.closed:
            conn = pool.acquire_nowait()
        state.inflight.add(self)
        if conn is not None:
            self.reused = True
            self.attach(conn)
        else:
            self.reused = False
            self.client.loop.create_task(self.connect(pool))

    async def connect(self, pool: UpstreamPool) -> None:
        try:
            conn = await pool.connect()
        except TimeoutError:
            self.state.metrics.upstream_error(pool.upstream.name, "connect_timeout")
            self.upstream_failed("connect_timeout", f"connecting to {pool.upstream.name} "
                                 f"timed out after {pool.upstream.connect_timeout}s")
            return
        except OSError as exc:
            self.state.metrics.upstream_error(pool.upstream.name, "connect")
            self.upstream_failed("connect", f"cannot connect to {pool.upstream.name} "
                                 f"({pool.upstream.url}): {exc.strerror or exc}")
            return
        if self.finished:
            pool.release(conn)
            return
        self.attach(conn)

    def attach(self, conn: UpstreamConnection) -> None:
        self.conn = conn
        conn.exchange = self
        conn.reusable = True
        pending = self.pending
        if pending:
            data = b"".join([self.head_bytes, *pending])
            self.pending = []
        else:
            data = self.head_bytes
        if self.upstream != MONOLITH:
            self.bytes_to_service = True
        conn.write(data)

    def check_timeout(self, now: float) -> None:
        """Called by the watchdog: answer 504 when the upstream is silent or slow too long."""
        if self.finished:
            self.state.inflight.discard(self)
            return
        upstream = self.state.pools[self.upstream].upstream
        if self.client.write_paused:
            self.last_activity = now  # a slow client, not a silent upstream
        idle = now - self.last_activity
        if idle < upstream.read_timeout and now - self.start < upstream.total_timeout:
            return
        which = "read" if idle >= upstream.read_timeout else "total"
        self.state.metrics.upstream_error(upstream.name, "timeout")
        self.upstream_failed("timeout", f"{upstream.name} did not answer within its "
                             f"{which}_timeout")

    def request_body(self, chunk: bytes) -> None:
        """A piece of the request body from the client parser."""
        if self.finished:
            return  # answered already (an early response): the rest of the body is dropped
        self.body_bytes += len(chunk)
        if self.started:
            self.last_activity = self.client.loop.time()
        tee = self.tee_request
        if tee is not None:
            self._tee(tee, chunk)
        if self.replay_body is not None:
            if self.body_bytes <= FALLBACK_BODY_LIMIT:
                self.replay_body.append(chunk)
            else:
                self.replay_body = None
                self.replayable = False
        data = b"%x\r\n%s\r\n" % (len(chunk), chunk) if self.chunked_request else chunk
        if self.conn is not None:
            self.conn.write(data)
        else:
            self.pending.append(data)

    def request_complete(self) -> None:
        self.request_done = True
        if self.chunked_request:
            if self.conn is not None:
                self.conn.write(b"0\r\n\r\n")
            else:
                self.pending.append(b"0\r\n\r\n")

    def _tee(self, tee: bytearray, chunk: bytes) -> None:
        limit = self.shadow_limit()
        room = limit - len(tee)
        if room >= len(chunk):
            tee += chunk
        else:
            tee += chunk[:max(room, 0)]
            self.tee_truncated = True

    def shadow_limit(self) -> int:
        decision = self.decision
        route_limit = decision.route.shadow.max_body_bytes if decision else None
        return route_limit if route_limit is not None \
            else self.table.config.shadow.max_body_bytes

    # -- response side ---------------------------------------------------------------------

    def response_head(self, status: int, reason: bytes, headers: RawHeaders) -> None:
        if self.finished:
            return
        self.status = status
        if status >= 500 and self.may_fall_back(idempotent_only=True):
            self.fall_back(f"status_{status}")
            return
        if self.tee_request is not None:
            self.response_headers = list(headers)
            self.tee_response = bytearray()
        cached = HEAD_CACHE.get(tuple(headers))
        lines, length, framed, has_rid, location = cached if cached is not None \
            else cached_response_lines(headers)
        if location:
            lines = self._rewritten_lines(headers)
        method = self.method
        no_body = method == "HEAD" or status in NO_BODY_STATUSES or status < 200
        self.close_delimited = not no_body and length is None and not framed
        parts = [STATUS_LINES.get(status) or b"HTTP/1.1 %d %s\r\n" % (status, reason or b"-"),
                 lines]
        if self.table.route_header and self.decision is not None:
            parts += (b"X-Strangler-Route: ", self.decision.header
                      if self.decision.header and not self.fallen_back
                      else self.route_header(), b"\r\n")
        if not has_rid:
            parts += (b"X-Request-ID: ", self.rid, b"\r\n")
        if status == 101:
            parts.append(b"Connection: Upgrade\r\nUpgrade: websocket\r\n")
        elif not no_body:
            if length is not None:
                parts += (b"Content-Length: ", length, b"\r\n")
            elif self.http11:
                self.chunked_response = True
                parts.append(b"Transfer-Encoding: chunked\r\n")
            else:
                self.keep_alive = False
        elif method == "HEAD" and length is not None:
            parts += (b"Content-Length: ", length, b"\r\n")
        if not self.keep_alive:
            parts.append(b"Connection: close\r\n\r\n")
        elif not self.http11:
            parts.append(b"Connection: keep-alive\r\n\r\n")
        else:
            parts.append(b"\r\n")
        self.response_started = True
        self.plain_body = not self.chunked_response and self.tee_response is None
        self.client.write(b"".join(parts))

    def _rewritten_lines(self, headers: RawHeaders) -> bytes:
        """The end-to-end lines with ``Location`` pointed back at the proxy."""
        origin = b"http://" + self.host if self.host else b""
        origins = self.state.pools[self.upstream].origins
        lowers, _ = header_map(headers)
        rewritten = [(n, rewrite_location(v, origins, origin) if lower == b"location" else v)
                     for (n, v), lower in zip(headers, lowers, strict=True)]
        return _response_lines(rewritten)[0]

    def route_header(self) -> bytes:
        """``NAME;target=UPSTREAM`` (plus ``;fallback=WHY`` when the monolith stepped in)."""
        assert self.decision is not None
        if self.fallen_back:
            name = self.decision.route.name
            return f"{name};target={MONOLITH};fallback={self.fallen_back}".encode()
        return self.decision.header_bytes

    def response_body(self, chunk: bytes) -> None:
        if self.finished or not self.response_started:
            return
        tee = self.tee_response
        if tee is not None:
            room = self.shadow_limit() - len(tee)
            if room >= len(chunk):
                tee += chunk
            else:
                tee += chunk[:max(room, 0)]
                self.response_truncated = True
        if self.chunked_response:
            self.client.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        else:
            self.client.write(chunk)

    def response_complete(self, tunnel: bool = False) -> None:
        if self.finished:
            return
        if not self.response_started:  # a fallen-back 5xx being drained: ignore
            return
        if self.chunked_response:
            self.client.write(b"0\r\n\r\n")
        conn = self.conn
        self.finish()
        if not self.request_done:
            self.keep_alive = False  # answered before the body ended: close both sides
        if conn is not None and not tunnel:
            conn.exchange = None
            if not self.request_done:
                conn.close()
            self.state.pools[self.upstream].release(conn)
        if self.tee_response is not None:
            self.offer_shadow()
        self.client.exchange_done(self, tunnel=tunnel)

    def finish(self) -> None:
        self.finished = True
        self.state.inflight.discard(self)
        decision = self.decision
        route = decision.route.name if decision else "none"
        elapsed = self.client.loop.time() - self.start
        self.state.metrics.observe(route, self.upstream, self.status, elapsed)
        if self.client.access_log:
            self.client.log_access(self, route, elapsed)

    def _admit_shadow(self, route: str) -> bool:
        try:
            admitted = bool(self.state.shadow_admit(route, self.method))
        except Exception:  # noqa: BLE001 - shadow must never hurt the client path
            admitted = False
        if not admitted:
            self.state.metrics.shadow_offer(route, False)
        return admitted

    def offer_shadow(self) -> None:
        """Hand the finished exchange to the sink, as the bytes read (decoded off this path)."""
        decision = self.decision
        if decision is None or self.tee_request is None or self.tee_response is None:
            return
        route = decision.route
        message: tuple[Any, ...] = (
            "offer", route.name, route.match.describe, route.target, self.method, self.path,
            self.raw_query, self.headers, bytes(self.tee_request), self.tee_truncated, self.rid,
            self.client.client_ip, self.status, self.response_headers, bytes(self.tee_response),
            self.response_truncated, (self.client.loop.time() - self.start) * 1000.0, "", {})
        try:
            accepted = bool(self.state.shadow_offer(message))
        except Exception:  # noqa: BLE001 - shadow must never hurt the client path
            accepted = False
        self.state.metrics.shadow_offer(route.name, accepted)

    # -- failures --------------------------------------------------------------------------

    def may_fall_back(self, idempotent_only: bool) -> bool:
        decision = self.decision
        if decision is None or not decision.fallback or self.fallen_back:
            return False
        if self.upstream == MONOLITH or not self.replayable or self.response_started:
            return False
        if not self.request_done and self.body_bytes:
            return False  # the body is still streaming: cannot replay what we did not keep
        if idempotent_only or self.bytes_to_service:
            return self.method in IDEMPOTENT_METHODS
        return True

    def fall_back(self, why: str) -> None:
        """Serve this request from the monolith instead of the failing service."""
        decision = self.decision
        assert decision is not None
        self.state.metrics.fallback(decision.route.name, why)
        self.fallen_back = why
        conn = self.conn
        if conn is not None:
            conn.exchange = None
            conn.close()
            self.conn = None
        self.upstream = MONOLITH
        self.status = 0
        self.bytes_to_service = False
        url = self.path.encode("latin-1") + (b"?" + self.raw_query if self.raw_query else b"")
        self.head_bytes = self.build_head(url, MONOLITH)
        body = self.replay_body or []
        if self.chunked_request:
            body = [b"%x\r\n%s\r\n" % (len(c), c) for c in body if c]
            if self.request_done:
                body.append(b"0\r\n\r\n")
        self.pending = list(body)
        self.begin()

    def upstream_failed(self, kind: str, message: str) -> None:
        """No (complete) response: fall back, answer 502/504, or cut the client off."""
        if self.finished:
            return
        connect_failure = kind in ("connect", "connect_timeout")
        if self.may_fall_back(idempotent_only=not connect_failure):
            self.fall_back(kind)
            return
        conn = self.conn
        if conn is not None:
            conn.exchange = None
            conn.abort()
        if self.response_started:
            # Too late for an error page: close so the client sees a truncated response.
            self.status = self.status or 502
            self.finish()
            self.client.abort()
            return
        self.status = 504 if "timeout" in kind else 502
        self.keep_alive = False
        self.finish()
        extra = [(b"X-Request-ID", self.rid)]
        if self.table.route_header and self.decision is not None:
            extra.append((b"X-Strangler-Route", self.route_header()))
        self.client.write(error_response(self.status, message, extra, close=True))
        self.client.exchange_done(self)

    def upstream_closed(self) -> None:
        """The upstream connection ended during this exchange."""
        if self.finished:
            return
        if self.close_delimited and self.response_started:
            self.conn = None
            self.response_complete()
            return
        self.conn = None
        if self.reused and not self.response_started and not self.retried and \
                self.request_done and not self.body_bytes and self.method in IDEMPOTENT_METHODS:
            # A pooled connection the upstream closed while idle (the race every keep-alive
            # client has): retry once on a fresh one, only when nothing can be duplicated.
            self.retried = True
            self.pending = []
            self.begin()
            return
        self.state.metrics.upstream_error(self.upstream, "reset")
        self.upstream_failed("reset", f"{self.upstream} closed the connection before the "
                             "response was complete")


HeadLines = tuple[bytes, bytes | None, bool, bool, bool]
# Built response header blocks by upstream header list: an upstream answers with the same
# headers over and over (only Date changes, once a second), so filtering and joining them is
# done once per distinct list. Bounded: cleared when full.
HEAD_CACHE: dict[tuple[tuple[bytes, bytes], ...], HeadLines] = {}
# The same for request heads (a client sends the same headers on every request of a
# connection): lower-cased names, name -> value, and the forwarded lines built from them.
REQUEST_CACHE: dict[tuple[tuple[bytes, bytes], ...],
                    tuple[list[bytes], dict[bytes, bytes], dict[bool, bytes]]] = {}
HEAD_CACHE_SIZE = 512
HEAD_CACHE_ENTRY_BYTES = 4096  # larger blocks are rebuilt each time


def cached_response_lines(headers: RawHeaders) -> HeadLines:
    """:func:`_response_lines`, remembered in :data:`HEAD_CACHE` when small."""
    key = tuple(headers)
    cached = HEAD_CACHE.get(key)
    if cached is None:
        cached = _response_lines(headers)
        if len(cached[0]) <= HEAD_CACHE_ENTRY_BYTES:
            if len(HEAD_CACHE) >= HEAD_CACHE_SIZE:
                HEAD_CACHE.clear()
            HEAD_CACHE[key] = cached
    return cached


def _response_lines(headers: RawHeaders) -> HeadLines:
    """The end-to-end header lines of a response (hop-by-hop, framing and the headers its
    ``Connection`` names dropped), its Content-Length, whether it has Transfer-Encoding, an
    ``X-Request-ID`` and a ``Location``."""
    lowers, rmap = header_map(headers)
    drop = RESPONSE_DROP
    connection = rmap.get(b"connection")
    if connection is not None:
        tokens = connection_tokens_of(connection)
        if tokens:
            drop = drop | tokens
    lines = [b": ".join(header) for header, lower in zip(headers, lowers, strict=True)
             if lower not in drop]
    block = b"\r\n".join(lines) + b"\r\n" if lines else b""
    return (block, rmap.get(b"content-length"), b"transfer-encoding" in rmap,
            b"x-request-id" in rmap, b"location" in rmap)


class ClientConnection(asyncio.Protocol):
    """One client connection: parses requests, runs their exchanges in order."""

    def __init__(self, state: ProxyState, loop: asyncio.AbstractEventLoop) -> None:
        self.state = state
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.peer = ""
        self.client_ip = ""
        self.trusted = False
        self.queue: deque[Exchange] = deque()
        self.url = b""
        self.headers: RawHeaders = []
        self.header_bytes = 0
        self.feed_bytes = 0
        self.current: Exchange | None = None
        self.paused: set[str] = set()
        self.write_paused = False
        self.closing = False
        self.tunnel: UpstreamConnection | None = None
        self.access_log = state.config.proxy.access_log == "json"
        self.batch: list[bytes] | None = None
        self.max_header_bytes = state.config.proxy.max_header_bytes
        self.in_head = False
        self.forwarded_prefix = b""
        self.rejected = False

    # asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        peer = transport.get_extra_info("peername")
        self.peer = self.client_ip = str(peer[0]) if peer else ""
        self.trusted = is_trusted(self.peer, self.state.config.proxy.trusted_proxies)
        self.forwarded_prefix = b"X-Forwarded-For: %s\r\nX-Forwarded-Proto: http\r\n" % (
            self.peer.encode("latin-1"))
        set_nodelay(transport)

    def data_received(self, data: bytes) -> None:
        if self.tunnel is not None:
            self.tunnel.write(data)
            return
        if self.rejected:
            return
        self.feed_bytes = len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self._kick()
            self._after_upgrade(data[upgrade.args[0]:])
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, _Reject):
                self.reject(cause.status, cause.message)
            else:
                self.reject(400, "the request could not be processed")
        except httptools.HttpParserError as exc:
            self.reject(400, f"malformed request: {exc}")
        else:
            if self.in_head:
                # A head still incomplete after this read: bound what it may buffer. The exact
                # 431 check is in on_headers_complete; this only stops a head that never ends
                # (the count may include the end of an earlier body, hence the slack).
                self.header_bytes += len(data)
                if self.header_bytes > self.max_header_bytes + HEAD_SLACK:
                    self.reject(431, "the request line and headers are too large")
                    return
            queue = self.queue  # _kick, inlined
            if queue and not queue[0].started and not self.rejected:
                queue[0].begin()

    def _kick(self) -> None:
        # Forwarding starts only after the whole read was parsed without error, so a request
        # whose framing is broken within the first bytes never reaches an upstream.
        if self.queue and not self.queue[0].started and not self.rejected:
            self.queue[0].begin()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        for exchange in self.queue:
            if not exchange.finished:
                exchange.finished = True
                self.state.inflight.discard(exchange)
                conn = exchange.conn
                if conn is not None:
                    conn.exchange = None
                    conn.abort()  # the client is gone: do not let the upstream keep sending
        self.queue.clear()
        if self.tunnel is not None:
            self.tunnel.close()
            self.tunnel = None

    def pause_writing(self) -> None:
        self.write_paused = True
        head = self.queue[0] if self.queue else None
        if head is not None and head.conn is not None and head.conn.transport is not None:
            head.conn.transport.pause_reading()
        if self.tunnel is not None and self.tunnel.transport is not None:
            self.tunnel.transport.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        head = self.queue[0] if self.queue else None
        if head is not None and head.conn is not None and head.conn.transport is not None:
            head.conn.transport.resume_reading()
        if self.tunnel is not None and self.tunnel.transport is not None:
            self.tunnel.transport.resume_reading()

    # httptools callbacks
    # No on_message_begin: state is reset after use, which saves a callback per request.
    def on_url(self, url: bytes) -> None:
        self.url += url
        self.in_head = True

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        parser = self.parser
        headers = self.headers
        url = self.url
        self.headers = []
        self.url = b""
        self.in_head = False
        # Exact size check here when needed; data_received bounds heads spanning reads.
        if self.feed_bytes + self.header_bytes > self.max_header_bytes:
            # The head may be over the limit (it is never larger than what was read): count.
            size = len(url) + sum(map(len, chain.from_iterable(headers))) + 4 * len(headers)
            if size > self.max_header_bytes:
                raise _Reject(431, "the request line and headers are too large")
        self.header_bytes = 0
        key = tuple(headers)
        cached = REQUEST_CACHE.get(key)
        if cached is None:
            lowers, hmap = header_map(headers)
            if len(lowers) != len(hmap) and lowers.count(b"host") > 1:
                raise _Reject(400, "more than one Host header")
            cached = (lowers, hmap, {})
            if sum(map(len, chain.from_iterable(headers))) <= HEAD_CACHE_ENTRY_BYTES:
                if len(REQUEST_CACHE) >= HEAD_CACHE_SIZE:
                    REQUEST_CACHE.clear()
                REQUEST_CACHE[key] = cached
        exchange = Exchange(self, parser.get_method(), url, headers, *cached)
        exchange.http11 = parser.get_http_version() == "1.1"
        exchange.keep_alive = parser.should_keep_alive()
        self.current = exchange
        exchange.prepare()
        limit = exchange.table.config.proxy.max_body_bytes
        length = exchange.hmap.get(b"content-length")
        if length is not None and limit and int(length) > limit:
            raise _Reject(413, f"the request body ({int(length)} bytes) is larger than "
                          f"max_body_bytes ({limit})")
        expect = exchange.hmap.get(b"expect")
        if expect is not None:
            if expect.lower() != b"100-continue":
                raise _Reject(417, "only Expect: 100-continue is supported")
            self.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self.queue.append(exchange)
        if len(self.queue) > 1:
            # A pipelined request behind an unfinished one: stop reading until the earlier
            # answers are out (bytes already read are queued, the rest wait in the kernel).
            # Not pausing in the common case saves two epoll_ctl calls per request.
            self.pause("pipeline")

    def on_body(self, body: bytes) -> None:
        exchange = self.current
        if exchange is None:
            return
        limit = exchange.table.config.proxy.max_body_bytes
        if limit and exchange.body_bytes + len(body) > limit:
            raise _Reject(413, f"the request body is larger than max_body_bytes ({limit})")
        exchange.request_body(body)

    def on_message_complete(self) -> None:
        exchange = self.current
        self.current = None
        if exchange is None:
            return
        exchange.request_complete()

    # connection-level API
    def write(self, data: bytes) -> None:
        """Send bytes to the client (collected while a batch is open, see :meth:`flush`)."""
        batch = self.batch
        if batch is not None:
            batch.append(data)
        elif self.transport is not None and not self.closing:
            self.transport.write(data)

    def flush(self) -> None:
        """Close the open batch and send it with one write (one syscall per upstream read)."""
        batch = self.batch
        self.batch = None
        if batch and self.transport is not None and not self.closing:
            self.transport.write(batch[0] if len(batch) == 1 else b"".join(batch))

    def pause(self, reason: str) -> None:
        """Stop reading from the client for ``reason`` (reasons nest)."""
        if not self.paused and self.transport is not None and not self.closing:
            self.transport.pause_reading()
        self.paused.add(reason)

    def resume(self, reason: str) -> None:
        """Drop one pause reason; read again when none is left."""
        self.paused.discard(reason)
        if not self.paused and self.transport is not None and not self.closing:
            self.transport.resume_reading()

    def close(self) -> None:
        """Close after flushing what was written."""
        self.flush()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
        self.closing = True

    def abort(self) -> None:
        """Drop the connection now."""
        self.batch = None
        if self.transport is not None:
            self.transport.abort()
        self.closing = True

    def reject(self, status: int, message: str) -> None:
        """Answer a request the proxy refuses (400/413/431) and close: never forwarded."""
        self.rejected = True
        current = self.current
        if current is not None and current.conn is not None:
            current.conn.exchange = None
            current.conn.abort()  # the upstream never gets a complete request
        if current is not None:
            current.finished = True
            self.state.inflight.discard(current)
        self.state.metrics.observe("none", "proxy", status, 0.0)
        if self.queue and self.queue[-1] is current:
            self.queue.pop()
        if self.queue:  # earlier pipelined answers are still being sent: cut the connection
            self.abort()
            return
        self.write(error_response(status, message, close=True))
        self.close()

    def exchange_done(self, exchange: Exchange, tunnel: bool = False) -> None:
        """The exchange at the head of the queue finished its response."""
        if self.queue and self.queue[0] is exchange:
            self.queue.popleft()
        if tunnel:
            return
        if not exchange.keep_alive or self.closing:
            self.close()
            return
        if self.write_paused and exchange.conn is not None and exchange.conn.transport:
            exchange.conn.transport.resume_reading()
        if self.queue and not self.queue[0].started:
            self.queue[0].begin()
        if "pipeline" in self.paused and len(self.queue) <= 1:
            self.resume("pipeline")

    def _after_upgrade(self, rest: bytes) -> None:
        exchange = self.queue[-1] if self.queue else None
        if exchange is not None and exchange.websocket and not exchange.finished:
            # Bytes after the upgrade request belong to the tunnel once the upstream agrees.
            exchange.pending.append(rest) if exchange.conn is None else \
                exchange.conn.write(rest)
            self.pause("pipeline")
            return
        # Not a websocket route: the Upgrade headers were stripped and the request forwarded
        # as plain HTTP; carry on parsing with a fresh parser.
        self.parser = httptools.HttpRequestParser(self)
        if rest:
            self.data_received(rest)

    def start_tunnel(self, conn: UpstreamConnection) -> None:
        """Switch to raw byte relaying after a 101 Switching Protocols."""
        self.tunnel = conn
        self.paused.clear()
        if self.transport is not None:
            self.transport.resume_reading()

    def log_access(self, exchange: Exchange, route: str, elapsed: float) -> None:
        record = {"time": time.time(), "client": self.client_ip, "method": exchange.method,
                  "path": exchange.path, "status": exchange.status, "route": route,
                  "target": exchange.upstream, "ms": round(elapsed * 1000, 3),
                  "request_id": exchange.request_id, "fallback": exchange.fallen_back or None}
        sys.stderr.write(json.dumps(record) + "\n")


class _Reject(Exception):  # noqa: N818 - internal signal, never escapes this module
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def set_nodelay(transport: asyncio.BaseTransport) -> None:
    """Turn off Nagle on a TCP transport: heads and small bodies go out at once."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def header_map(headers: RawHeaders) -> tuple[list[bytes], dict[bytes, bytes]]:
    """Lower-cased names (aligned with ``headers``) and name -> value, repeats joined.

    >>> header_map([(b"Host", b"a"), (b"Cookie", b"x=1"), (b"cookie", b"y=2")])[1]
    {b'host': b'a', b'cookie': b'x=1; y=2'}
    """
    found = {name.lower(): value for name, value in headers}
    if len(found) == len(headers):
        return list(found), found  # no repeats (the common case): insertion order = lowers
    lowers = [name.lower() for name, _ in headers]
    joined: dict[bytes, bytes] = {}
    for (_, value), lower in zip(headers, lowers, strict=True):
        if lower in joined:
            joined[lower] += (b"; " if lower == b"cookie" else b", ") + value
        else:
            joined[lower] = value
    return lowers, joined


async def watchdog(state: ProxyState, tick: float = 0.1) -> None:
    """Check in-flight exchanges for read/total timeouts every ``tick`` seconds.

    One periodic task instead of a timer per request: arming and cancelling a timer per
    request cost more than the whole routing decision. Timeouts fire up to ``tick`` late.
    """
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(tick)
        now = loop.time()
        for exchange in list(state.inflight):
            exchange.check_timeout(now)


def protocol_factory(state: ProxyState, loop: asyncio.AbstractEventLoop,
                     ) -> Callable[[], ClientConnection]:
    """The factory ``loop.create_server`` needs."""
    return lambda: ClientConnection(state, loop)


def listen_socket(listen: str, reuse_port: bool = False) -> socket.socket:
    """A bound, listening TCP socket for ``HOST:PORT`` (port 0 picks a free one)."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, int(port)))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


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


def describe(sock: socket.socket) -> str:
    """``host:port`` a socket listens on."""
    address: Any = sock.getsockname()
    return f"{address[0]}:{address[1]}"


__all__ = ["ClientConnection", "NullSink", "ProxyState", "UpstreamPool", "build_pools",
           "describe", "listen_socket", "protocol_factory", "watchdog"]
