"""The forwarding edge's client side: an asyncio + httptools HTTP/1.1 listener.

Callback-driven on purpose (no coroutine per request): the benchmark in ``bench/proxy``
showed that every await on the hot path costs throughput, so a request is a small state
machine driven by parser callbacks on both sides:

    client bytes ─▶ ClientConnection (HttpRequestParser) ─ Exchange ─▶ UpstreamConnection
    client ◀─ response head/body re-framed ◀─ (HttpResponseParser) ◀─ upstream bytes

This module is the left end: :class:`ClientConnection` parses requests, rejects what must not
be forwarded (400/413/417/431), runs its exchanges in order (pipelining) and batches writes
to the client; :class:`ProxyState` is what every connection reads per request; plus the
listening socket and the timeout watchdog. The exchange itself (routing, heads, re-framing,
fallback) is in ``forward.py``, the upstream pools and connections in ``upstream.py``.

Bodies stream both ways chunk by chunk; backpressure is the transports' own: when the
upstream's write buffer fills, the client stops being read (``pause_reading``), so memory
stays flat for any body size. The other way, a client slower than its answer gets the rest
from a temporary file (``pause_writing``), so that a slow reader never holds an upstream
connection; the upstream is paused only once the spool holds ``max_response_spool_bytes``.
Framing is always re-derived (Content-Length passed through after llhttp validated it,
chunked re-encoded), so a smuggled framing never reaches an upstream.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable
from itertools import chain
from typing import IO, Any, Final

import httptools

from strangler_proxy.edge.forward import (
    HEAD_CACHE_ENTRY_BYTES,
    HEAD_CACHE_SIZE,
    REQUEST_CACHE,
    Exchange,
    ProxyState,
)
from strangler_proxy.edge.limits import HOST, REFUSED_METHODS, check_client, version_refusal
from strangler_proxy.edge.upstream import UpstreamConnection, set_nodelay
from strangler_proxy.headers import RawHeaders, error_response, header_map, is_trusted

HEAD_SLACK: Final = 256 * 1024  # see ClientConnection.data_received
SPOOL_SLICE: Final = 64 * 1024  # what a spooled answer is sent in (the transport holds one)


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
        self.continuing: Exchange | None = None  # see _after_upgrade
        # slow-client deadlines, checked by the watchdog (check_client) on the coarse clock
        self.head_since = 0.0
        self.body_since = 0.0
        self.idle_since = state.now
        self.served = False
        self.deferred_reject: bytes | None = None
        # A slow reader's answer, spooled so the upstream connection goes back to the pool
        # (see pause_writing): bytes [out_read, out_size) of the temporary file are unsent.
        self.out_spool: IO[bytes] | None = None
        self.out_read = 0
        self.out_size = 0
        self.upstream_held = False  # the upstream (or tunnel) sending to it is made to wait
        self.close_when_sent = False
        self.write_paused_since = 0.0
        self.unsent_seen = 0  # the transport's unsent bytes at the last look (send_timeout)
        self.counted_ip = False  # counted in state.per_ip (max_connections_per_ip)

    # asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        state = self.state
        limit = state.config.proxy.max_client_connections
        if len(state.clients) >= limit:
            self._refuse(f"too many client connections (max_client_connections = {limit})")
            return
        peer = transport.get_extra_info("peername")
        self.peer = self.client_ip = str(peer[0]) if peer else ""
        per_ip = state.config.proxy.max_connections_per_ip
        if per_ip:
            open_now = state.per_ip.get(self.peer, 0)
            if open_now >= per_ip:
                self._refuse(f"too many connections from {self.peer} "
                             f"(max_connections_per_ip = {per_ip})")
                return
            state.per_ip[self.peer] = open_now + 1
            self.counted_ip = True
        state.clients.add(self)
        self.idle_since = state.now or self.loop.time()
        self.trusted = is_trusted(self.peer, self.state.config.proxy.trusted_proxies)
        self.forwarded_prefix = b"X-Forwarded-For: %s\r\nX-Forwarded-Proto: http\r\n" % (
            self.peer.encode("latin-1"))
        set_nodelay(transport)

    def _refuse(self, message: str) -> None:
        # Past a connection limit: say so and close, rather than hold a descriptor per attacker.
        self.rejected = True
        self.state.metrics.observe("none", "proxy", 503, 0.0)
        if self.transport is not None:
            self.transport.write(error_response(503, message, close=True))
            self.transport.close()

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
        self.state.clients.discard(self)
        self._drop_out_spool()
        if self.counted_ip:
            self.counted_ip = False
            per_ip = self.state.per_ip
            left = per_ip.get(self.peer, 1) - 1
            if left > 0:
                per_ip[self.peer] = left
            else:
                per_ip.pop(self.peer, None)
        for exchange in self.queue:
            if exchange.spool is not None:
                exchange.drop_spool()
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
        # The client reads slower than its answer comes. Passing that on to the upstream
        # would hold an upstream connection per slow reader (a few dozen empty the pool: the
        # slow-read attack); like nginx's proxy_buffering, what is written from now on goes to
        # a spool instead (write, _spool), and the upstream only waits once the spool holds
        # max_response_spool_bytes. send_timeout (limits.py) closes a client that reads none.
        self.write_paused = True
        self.write_paused_since = self.state.now
        self.unsent_seen = self.unsent()
        if self.tunnel is not None or self.state.config.proxy.max_response_spool_bytes <= 0:
            self._hold_upstream()  # tunnels, and spooling turned off: the upstream waits
        elif self.out_spool is None:
            self._open_spool()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.out_spool is not None:
            self._send_spooled()  # may pause again
        if not self.write_paused and self.out_spool is None and self.upstream_held:
            self._release_upstream()

    def unsent(self) -> int:
        """Bytes the transport holds for the client (what send_timeout watches shrink)."""
        transport = self.transport
        return transport.get_write_buffer_size() if transport is not None else 0

    def _sender(self) -> UpstreamConnection | None:
        """What is being sent to this client: the tunnel, or the head exchange's upstream."""
        if self.tunnel is not None:
            return self.tunnel
        head = self.queue[0] if self.queue else None
        return head.conn if head is not None else None

    def _hold_upstream(self) -> None:
        """Stop reading from what is being sent to this client."""
        conn = self._sender()
        if conn is not None and conn.transport is not None:
            conn.transport.pause_reading()
            self.upstream_held = True

    def _release_upstream(self) -> None:
        self.upstream_held = False
        conn = self._sender()
        if conn is not None and conn.transport is not None:
            conn.transport.resume_reading()

    def _spool(self, data: bytes) -> None:
        """Keep bytes for a client that is not taking them (or has spooled bytes unsent)."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self.out_spool is None and (
                self.tunnel is not None or self.state.config.proxy.max_response_spool_bytes <= 0
                or not self._open_spool()):
            transport.write(data)  # bounded: what is sent to it is not being read
            self._hold_upstream()
            return
        spool = self.out_spool
        assert spool is not None
        try:
            os.pwrite(spool.fileno(), data, self.out_size)
        except OSError:
            # the disk is full: the answer cannot be kept, so it is cut, as when the upstream
            # fails mid-answer (the client sees a short answer and a closed connection)
            self.abort()
            return
        self.out_size += len(data)
        if not self.upstream_held and self.out_size - self.out_read > \
                self.state.config.proxy.max_response_spool_bytes:
            self._hold_upstream()

    def _open_spool(self) -> bool:
        """Open the spool; without a temporary file to be had, the upstream waits instead."""
        try:
            self.out_spool = tempfile.TemporaryFile(prefix="strangler-answer-")
        except OSError:
            self._hold_upstream()
            return False
        self.out_read = self.out_size = 0
        return True

    def _send_spooled(self) -> None:
        """Send the spool while the client keeps up."""
        spool = self.out_spool
        transport = self.transport
        if spool is None or transport is None:
            return
        while not self.write_paused and self.out_read < self.out_size:
            if transport.is_closing():
                return
            chunk = os.pread(spool.fileno(), min(SPOOL_SLICE, self.out_size - self.out_read),
                             self.out_read)
            if not chunk:
                break
            self.out_read += len(chunk)
            transport.write(chunk)  # may call pause_writing: the loop ends
        if self.out_read < self.out_size:
            return
        if self.write_paused:
            self.out_read = self.out_size = 0  # sent, but paused again: keep the file
        else:
            self._drop_out_spool()
        if self.upstream_held:
            self._release_upstream()
        if self.close_when_sent and not transport.is_closing():
            transport.close()

    def _drop_out_spool(self) -> None:
        if self.out_spool is not None:
            self.out_spool.close()
            self.out_spool = None
            self.out_read = self.out_size = 0

    def cut(self) -> None:
        """The answer being sent cannot be completed (its upstream failed mid-way).

        Without a spool, drop the connection now. With one, it may still hold earlier,
        complete pipelined answers: send it, then close; nothing more is read or answered.
        The cut answer is short of its framing (Content-Length, or the last chunk), which is
        how the client tells."""
        if self.out_spool is None:
            self.abort()
            return
        self.batch = None
        self.closing = True
        self.close_when_sent = True
        if self.transport is not None:
            self.transport.pause_reading()
        if not self.write_paused:
            self._send_spooled()

    # httptools callbacks
    # No on_message_begin: state is reset after use, which saves a callback per request.
    def on_url(self, url: bytes) -> None:
        self.url += url
        if not self.in_head:
            self.in_head = True
            self.head_since = self.state.now

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        parser = self.parser
        headers = self.headers
        url = self.url
        self.headers = []
        self.url = b""
        self.in_head = False
        if self.continuing is not None:  # the synthetic head of _after_upgrade: body follows
            self.current = self.continuing
            self.continuing = None
            return
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
            host = hmap.get(b"host")
            if host is not None and not HOST.fullmatch(host):
                raise _Reject(400, f"invalid Host header {host[:100]!r}")
            coding = hmap.get(b"transfer-encoding")
            if coding is not None and coding.strip().lower() != b"chunked":
                # llhttp accepts "gzip, chunked"; forwarding it as plain chunked would hand
                # the upstream a body it cannot read as sent. nginx answers 501 too.
                raise _Reject(501, "only Transfer-Encoding: chunked is supported")
            # Last: does the head carry framing or Expect (else the body checks below are
            # skipped: the common GET pays for none of them).
            framed = b"transfer-encoding" in hmap or b"expect" in hmap or \
                hmap.get(b"content-length", b"0") != b"0"
            cached = (lowers, hmap, {}, framed)
            if sum(map(len, chain.from_iterable(headers))) <= HEAD_CACHE_ENTRY_BYTES:
                if len(REQUEST_CACHE) >= HEAD_CACHE_SIZE:
                    REQUEST_CACHE.clear()
                REQUEST_CACHE[key] = cached
        version = parser.get_http_version()
        if version != "1.1":
            refusal = version_refusal(version, cached[1])
            if refusal:
                raise _Reject(*refusal)
        elif b"host" not in cached[1]:
            raise _Reject(400, "an HTTP/1.1 request needs a Host header")
        method = parser.get_method()
        if method in REFUSED_METHODS or url == b"*":
            raise _Reject(400 if url == b"*" else 405, "CONNECT, TRACE and OPTIONS * are not "
                          "forwarded: this is a reverse proxy")
        exchange = Exchange(self, method, url, headers, cached[0], cached[1], cached[2])
        exchange.http11 = version == "1.1"
        exchange.keep_alive = parser.should_keep_alive()
        self.current = exchange
        exchange.prepare()
        if cached[3]:
            self._check_framing(exchange)
        self.queue.append(exchange)
        if len(self.queue) > 1:
            # A pipelined request behind an unfinished one: stop reading until the earlier
            # answers are out (bytes already read are queued, the rest wait in the kernel).
            # Not pausing in the common case saves two epoll_ctl calls per request.
            self.pause("pipeline")

    def _check_framing(self, exchange: Exchange) -> None:
        # A request with a body or Expect: limits, the Upgrade-with-body case, buffering.
        hmap = exchange.hmap
        if b"transfer-encoding" in hmap or hmap.get(b"content-length", b"0") != b"0":
            self.body_since = self.state.now
            if exchange.tokens and b"upgrade" in exchange.tokens and b"upgrade" in hmap and \
                    not exchange.websocket:
                # llhttp stops at the head of any request with Connection: upgrade and leaves
                # its body unparsed; on a plain route that body must still reach the upstream
                # as a body, never be parsed as the next request (desync). See _after_upgrade.
                exchange.body_after_upgrade = True
            if exchange.decision is not None and exchange.decision.route.buffer_request:
                exchange.buffered = True
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
        if exchange is None or exchange.body_after_upgrade:
            return
        exchange.request_complete()

    # connection-level API
    def write(self, data: bytes) -> None:
        """Send bytes to the client (collected while a batch is open, see :meth:`flush`)."""
        batch = self.batch
        if batch is not None:
            batch.append(data)
        elif self.write_paused or self.out_spool is not None:
            self._spool(data)
        elif self.transport is not None and not self.closing:
            self.transport.write(data)

    def flush(self) -> None:
        """Close the open batch and send it with one write (one syscall per upstream read)."""
        batch = self.batch
        self.batch = None
        if batch:
            if self.write_paused or self.out_spool is not None:
                self._spool(batch[0] if len(batch) == 1 else b"".join(batch))
            elif self.transport is not None and not self.closing:
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
        """Close after flushing what was written (a spooled answer is sent first)."""
        self.flush()
        self.closing = True
        if self.out_spool is not None:
            # closed once the spooled answer is sent; nothing more is read meanwhile (a
            # request after "Connection: close" is not forwarded)
            self.close_when_sent = True
            if self.transport is not None:
                self.transport.pause_reading()
            return
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def abort(self) -> None:
        """Drop the connection now."""
        self.batch = None
        self._drop_out_spool()
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
            current.drop_spool()
            self.state.inflight.discard(current)
        self.state.metrics.observe("none", "proxy", status, 0.0)
        if self.queue and self.queue[-1] is current:
            self.queue.pop()
        answer = error_response(status, message, close=True)
        if self.queue:  # earlier pipelined answers are still being sent: answer after them
            self.deferred_reject = answer
            if not self.queue[0].started:
                self.queue[0].begin()
            return
        self.write(answer)
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
        if not self.queue:
            self.served = True
            self.idle_since = self.state.now
            if self.deferred_reject is not None:
                self.write(self.deferred_reject)
                self.close()
                return
        if self.upstream_held:
            # the exchange's upstream connection was made to wait (and has gone back to the
            # pool): the next exchange's starts reading
            self.upstream_held = False
            if exchange.conn is not None and exchange.conn.transport:
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
        # as plain HTTP; carry on parsing with a fresh parser. When the request has a body,
        # llhttp did not parse it: feed the fresh parser a synthetic head with the same
        # framing, so the body that follows is parsed as this exchange's body (and what comes
        # after it as the next request), exactly as for a request without Upgrade.
        self.parser = httptools.HttpRequestParser(self)
        if exchange is not None and exchange.body_after_upgrade:
            exchange.body_after_upgrade = False
            length = exchange.hmap.get(b"content-length")
            framing = b"Content-Length: " + length if length is not None \
                else b"Transfer-Encoding: chunked"
            self.continuing = exchange
            self.data_received(b"POST / HTTP/1.1\r\nHost: x\r\n" + framing + b"\r\n\r\n" + rest)
            return
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


async def watchdog(state: ProxyState, tick: float = 0.1) -> None:
    """Check in-flight exchanges for read/total timeouts every ``tick`` seconds.

    One periodic task instead of a timer per request: arming and cancelling a timer per
    request cost more than the whole routing decision. Timeouts fire up to ``tick`` late.
    """
    loop = asyncio.get_running_loop()
    state.now = loop.time()
    ticks = 0
    while True:
        await asyncio.sleep(tick)
        now = state.now = loop.time()
        for exchange in list(state.inflight):
            exchange.check_timeout(now)
        ticks += 1
        if ticks % 5 == 0:  # client deadlines are seconds long: a sweep every 5 ticks will do
            for conn in list(state.clients):
                check_client(conn, now)


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


def describe(sock: socket.socket) -> str:
    """``host:port`` a socket listens on."""
    address: Any = sock.getsockname()
    return f"{address[0]}:{address[1]}"
