"""One request's journey through the proxy: :class:`Exchange`, from client to upstream and back.

The client side (``server.py``) creates an exchange per parsed request head; the exchange
routes it, builds the upstream request head (hop-by-hop, framing and forwarding headers
re-derived), streams the body to a pooled upstream connection (``upstream.py``) and
re-frames the response for the client (Content-Length passed through, chunked re-encoded,
``Location`` rewritten). It also owns what can go wrong in between: falling back to the
monolith, 502/504 answers, the retry of a stale keep-alive connection, read/total timeouts
(checked by the watchdog), and the copy offered to the shadow sink.

Header work that depends only on the header list is memoised here: :data:`HEAD_CACHE` (the
filtered response header block) and :data:`REQUEST_CACHE` (a request's names, map and
forwarded lines), both bounded.

Not here: parsing client bytes, pipelining and rejects (``server.py``), and opening, pooling
and parsing upstream connections (``upstream.py``).
"""

from __future__ import annotations

import asyncio
import hashlib
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, Final, Protocol

from strangler_proxy.config import IDEMPOTENT_METHODS, MONOLITH, ProxyConfig
from strangler_proxy.edge.upstream import Downstream, UpstreamConnection, UpstreamPool
from strangler_proxy.errors import PoolTimeout
from strangler_proxy.exchange import COPY_REQUEST_ONLY, NullSink, ShadowSink
from strangler_proxy.headers import (
    NO_BODY_STATUSES,
    PROTECTED_HEADERS,
    REASONS,
    REQUEST_DROP,
    RESPONSE_DROP,
    VIA,
    RawHeaders,
    client_address,
    connection_tokens_of,
    error_response,
    forwarded_headers,
    header_map,
    new_request_id_bytes,
    normalize_path,
    rewrite_location,
    sane_request_id,
    serialize_lines,
)
from strangler_proxy.metrics import Metrics
from strangler_proxy.routing import Decision, RouteTable

FALLBACK_BODY_LIMIT: Final = 64 * 1024  # request bodies kept for a possible replay to the monolith
# Status lines by code: the reason phrase is informational (RFC 9112 §4), so the proxy sends
# the standard one rather than relaying the upstream's, which saves a parser callback.
STATUS_LINES: Final = {code: b"HTTP/1.1 %d %s\r\n" % (code, reason)
                       for code, reason in REASONS.items()}
REQUEST_DROP_HOST: Final = REQUEST_DROP | {b"host"}
NO_HEADERS: Final[RawHeaders] = []  # shared by every exchange until replaced: never mutated
NO_TOKENS: Final[frozenset[bytes]] = frozenset()
# Method names as str without a decode per request (others are decoded as they come).
METHODS: Final = {m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE",
                                    "OPTIONS", "TRACE", "CONNECT")}



def _no_copy(route: str, head: bytes, body: bytearray | None, truncated: bool) -> bool:
    """The copy entry point of a sink that never admits a request alone."""
    return False


@dataclass(slots=True)
class ProxyState:
    """What every connection reads per request; ``table`` is swapped atomically on reload."""

    table: RouteTable
    pools: dict[str, UpstreamPool]
    metrics: Metrics
    sink: ShadowSink = field(default_factory=NullSink)
    loop: asyncio.AbstractEventLoop | None = None
    inflight: set[Exchange] = field(default_factory=set)
    clients: set[Client] = field(default_factory=set)
    per_ip: dict[str, int] = field(default_factory=dict)  # open connections by peer address
    now: float = 0.0  # the loop's time as of the watchdog's last tick (a coarse, free clock)
    # the sink's hot-path entry points, bound once
    shadow_admit: Callable[[str, str], int] = field(init=False)
    shadow_offer: Callable[[tuple[Any, ...]], bool] = field(init=False)
    shadow_copy: Callable[[str, bytes, bytearray | None, bool], bool] = field(init=False)
    clock: Callable[[], float] = field(init=False)

    def __post_init__(self) -> None:
        self.shadow_admit = self.sink.admit
        self.shadow_offer = self.sink.offer_raw
        # a sink whose admit answers COPY_REQUEST_ONLY takes the request alone (shadow/remote.py)
        self.shadow_copy = getattr(self.sink, "copy", _no_copy)
        # the loop's clock, bound once (a stored callable is cheaper than a method lookup)
        self.clock = self.loop.time if self.loop is not None else time.monotonic

    @property
    def config(self) -> ProxyConfig:
        """The config of the active table."""
        return self.table.config


class Client(Downstream, Protocol):
    """The client connection, as its exchanges and the watchdog's limits (``limits.py``) see
    it (``server.ClientConnection``)."""

    state: ProxyState
    loop: asyncio.AbstractEventLoop
    peer: str
    client_ip: str
    trusted: bool
    forwarded_prefix: bytes
    access_log: bool
    write_paused: bool
    write_paused_since: float
    unsent_seen: int
    upstream_held: bool
    out_spool: IO[bytes] | None
    # for the slow-client limits
    closing: bool
    rejected: bool
    in_head: bool
    head_since: float
    body_since: float
    idle_since: float
    served: bool

    @property
    def tunnel(self) -> UpstreamConnection | None: ...
    @property
    def current(self) -> Exchange | None: ...  # the exchange whose body is arriving
    @property
    def queue(self) -> Sequence[Exchange]: ...  # the exchanges in flight, in order

    def abort(self) -> None: ...
    def cut(self) -> None: ...
    def unsent(self) -> int: ...
    def reject(self, status: int, message: str) -> None: ...
    def exchange_done(self, exchange: Exchange, tunnel: bool = False) -> None: ...
    def log_access(self, exchange: Exchange, route: str, elapsed: float) -> None: ...


class Exchange:
    """One request/response through the proxy: the glue between the two parsers.

    Most attributes are class-level defaults so that creating one costs a handful of stores
    (the per-request constructor showed up in the benchmark profile).
    """

    decision: Decision | None = None
    upstream: str  # set in __init__ (a compiled class takes only literal defaults)
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
    request_only = False  # the sink takes the request alone (the comparator asks the monolith)
    response_truncated = False
    tee_started = 0.0
    response_hash: Any = None  # SHA-256 of the whole response body once past the shadow cap
    response_size = 0
    body_bytes = 0
    replay_body: list[bytes] | None = None
    replayable = True
    bytes_to_service = False
    reused = False
    retried = False
    finished = False
    websocket = False
    body_after_upgrade = False  # Connection: upgrade with a body on a plain route (server.py)
    buffered = False  # the body is held until complete before an upstream connection is taken
    pending_bytes = 0
    spool: IO[bytes] | None = None  # a buffered body past request_buffer_bytes, on disk
    fallen_back = ""
    response_headers: RawHeaders  # set in __init__; replaced, never mutated
    host = b""
    path = "/"
    raw_query = b""
    tokens: frozenset[bytes]  # set in __init__

    def __init__(self, client: Client, method: bytes, url: bytes,
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
        self.upstream = MONOLITH
        self.response_headers = NO_HEADERS
        self.tokens = NO_TOKENS

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
            # "Connection: close, Host" must not strip the Host header: never drop end-to-end
            # routing headers because the client listed them as hop-by-hop.
            self.tokens = connection_tokens_of(connection) - PROTECTED_HEADERS
        rid = hmap.get(b"x-request-id")
        self.rid = rid if rid is not None and sane_request_id(rid) else new_request_id_bytes()
        url = self.url
        if not url.startswith(b"/"):  # absolute-form (server.py refused "*"): path and query
            rest = url.split(b"://", 1)[-1]
            slash = rest.find(b"/")
            url = rest[slash:] if slash >= 0 else b"/"
        raw_path, _, self.raw_query = url.partition(b"?")
        # Tested on the decoded str: on CPython 3.11 `needle in some_bytes` first tries the
        # needle as an int, raising and clearing a TypeError each time, and bytes.find parses
        # its arguments with a format string; three such tests cost 4% of the forwarding
        # path, the str tests nearly nothing (callgrind over bench.proxy.hotpath).
        path = raw_path.decode("latin-1")
        if "%" in path or "/." in path or "//" in path:
            # Route on, and forward, the path an origin server will resolve, so that
            # /svc/../x and /%73vc/x go where /x and /svc/x go (as nginx normalises).
            raw_path = normalize_path(raw_path)
            url = raw_path + (b"?" + self.raw_query if self.raw_query else b"")
            path = raw_path.decode("latin-1")
        self.path = path
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
        if decision.shadow:
            admitted = self._admit_shadow(decision.route.name)
            if admitted > 0:
                self.tee_request = bytearray()
                self.request_only = admitted == COPY_REQUEST_ONLY
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
        """Start forwarding: take a pooled connection or open one.

        A buffered body (``buffer_request``) waits until it is complete, so a slow client
        never holds an upstream connection: the server calls again once it is.
        """
        if self.buffered and not self.request_done:
            return
        self.started = True
        self.start = self.last_activity = self.state.clock()
        if self.tee_request is not None and not self.request_only:
            # the loop's clock ticks in whole ms under uvloop; the service's latency is
            # measured with perf_counter, so the monolith's must be too
            self.tee_started = time.perf_counter()
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
        except PoolTimeout:
            self.state.metrics.upstream_error(pool.upstream.name, "pool_timeout")
            self.upstream_failed("pool_timeout", f"no free connection to {pool.upstream.name} "
                                 f"within its pool_timeout ({pool.upstream.pool_timeout}s, "
                                 f"max_connections = {pool.upstream.max_connections})")
            return
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
        conn.client = self.client
        conn.reusable = True
        conn.head_read = 0
        conn.head_limit = self.table.config.proxy.max_response_header_bytes
        pending = self.pending
        if self.spool is not None:
            if self.upstream != MONOLITH:
                self.bytes_to_service = True
            conn.write(self.head_bytes)
            self.spool.seek(0)
            self.pump()
            return
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
        if self.client.upstream_held:
            self.last_activity = now  # made to wait for a slow client, not a silent upstream
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
            self.last_activity = self.state.clock()
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
        elif self.buffered:
            self.hold(data)
        else:
            self.pending.append(data)

    def hold(self, data: bytes) -> None:
        """Keep a buffered body's bytes: in memory up to request_buffer_bytes, then on disk.

        Like nginx's client_body_buffer_size / client_body_temp_path. The file writes are
        blocking; they go to the page cache, and only bodies past the cap pay for them.
        """
        spool = self.spool
        if spool is None:
            self.pending.append(data)
            self.pending_bytes += len(data)
            if self.pending_bytes <= self.table.config.proxy.request_buffer_bytes:
                return
            spool = self.spool = tempfile.TemporaryFile(prefix="strangler-body-")
            spool.write(b"".join(self.pending))
            self.pending = []
        else:
            spool.write(data)

    def pump(self) -> None:
        """Send a spooled body to the upstream, a slice at a time, while it keeps up."""
        spool = self.spool
        conn = self.conn
        while spool is not None and conn is not None and conn.transport is not None:
            chunk = spool.read(256 * 1024)
            if not chunk:
                spool.close()
                self.spool = None
                return
            conn.write(chunk)
            if conn.transport.get_write_buffer_size() > 1024 * 1024:
                return  # resume_writing on the upstream connection calls again

    def request_complete(self) -> None:
        self.request_done = True
        if self.chunked_request:
            if self.conn is not None:
                self.conn.write(b"0\r\n\r\n")
            elif self.buffered:
                self.hold(b"0\r\n\r\n")
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
        if self.tee_request is not None and not self.request_only:
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
            if self.response_hash is not None:  # past the cap: hashed, not kept
                self.response_hash.update(chunk)
                self.response_size += len(chunk)
            else:
                room = self.shadow_limit() - len(tee)
                if room >= len(chunk):
                    tee += chunk
                else:
                    # Keep comparing honestly past the cap: hash the whole body as it streams
                    # (only responses larger than the cap pay for it).
                    self.response_hash = hashlib.sha256(tee)
                    self.response_hash.update(chunk)
                    self.response_size = len(tee) + len(chunk)
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
        elif self.request_only:
            self.copy_shadow()
        self.client.exchange_done(self, tunnel=tunnel)

    def drop_spool(self) -> None:
        """Close (and so delete) the temp file of a spooled body, if any."""
        if self.spool is not None:
            self.spool.close()
            self.spool = None

    def finish(self) -> None:
        self.finished = True
        if self.spool is not None:
            self.drop_spool()
        self.state.inflight.discard(self)
        decision = self.decision
        route = decision.route.name if decision else "none"
        elapsed = self.state.clock() - self.start
        self.state.metrics.observe(route, self.upstream, self.status, elapsed)
        if self.client.access_log:
            self.client.log_access(self, route, elapsed)

    def _admit_shadow(self, route: str) -> int:
        try:
            admitted = self.state.shadow_admit(route, self.method)
        except Exception:  # noqa: BLE001 - shadow must never hurt the client path
            admitted = 0
        if admitted == 0:  # (a paced copy, below 0, is counted by the sink alone)
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
            self.response_truncated, (time.perf_counter() - self.tee_started) * 1000.0, "", {},
            self.response_hash.hexdigest() if self.response_hash is not None else "",
            self.response_size if self.response_hash is not None else -1)
        try:
            accepted = bool(self.state.shadow_offer(message))
        except Exception:  # noqa: BLE001 - shadow must never hurt the client path
            accepted = False
        self.state.metrics.shadow_offer(route.name, accepted)

    def copy_shadow(self) -> None:
        """Hand the request alone to the sink (its head as sent upstream, and its body)."""
        decision = self.decision
        if decision is None:
            return
        route = decision.route.name
        try:
            accepted = bool(self.state.shadow_copy(route, self.head_bytes, self.tee_request,
                                                   self.tee_truncated))
        except Exception:  # noqa: BLE001 - shadow must never hurt the client path
            accepted = False
        self.state.metrics.shadow_offer(route, accepted)

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
        connect_failure = kind in ("connect", "connect_timeout", "pool_timeout")
        if self.may_fall_back(idempotent_only=not connect_failure):
            self.fall_back(kind)
            return
        conn = self.conn
        if conn is not None:
            conn.exchange = None
            conn.abort()
        if self.response_started:
            # Too late for an error page: close so the client sees a truncated response
            # (after earlier pipelined answers still spooled for it, see ClientConnection.cut).
            self.status = self.status or 502
            self.finish()
            self.client.cut()
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
HEAD_CACHE: Final[dict[tuple[tuple[bytes, bytes], ...], HeadLines]] = {}
# The same for request heads (a client sends the same headers on every request of a
# connection): lower-cased names, name -> value, and the forwarded lines built from them.
# names, map, forwarded blocks, and whether the head carries framing or Expect (server.py)
REQUEST_CACHE: Final[dict[tuple[tuple[bytes, bytes], ...],
                          tuple[list[bytes], dict[bytes, bytes], dict[bool, bytes], bool]]] = {}
HEAD_CACHE_SIZE: Final = 512
HEAD_CACHE_ENTRY_BYTES: Final = 4096  # larger blocks are rebuilt each time


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
