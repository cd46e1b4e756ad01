"""The standalone comparator (``strangler shadow serve``): shadow comparison off the proxy's cores.

::

    our proxy (proxy_sends_to = "comparator") ──POST /_strangler/offers (signed batch)──┐
    nginx `mirror`, Envoy / Istio mirroring ──GET|HEAD|OPTIONS <path> (+ token)─────────┤
                                                                                         ▼
         ComparatorRunner (a ShadowRunner): [mirrors only: ask the monolith for the baseline]
         → copy to the route's service → sometimes ask the monolith again (noise) → compare
         with the route's rules → redact → the diff store of the routes file (PostgreSQL)

Two kinds of traffic reach the port. **Batches** from our proxy (:mod:`.remote`) carry the
offers in the worker's frame format (``sink.encode_frame``), with the monolith's answer the
client got; they are taken only when ``X-Strangler-Comparator-Auth`` is the shadow marker
(``shadow_marker.sign_marker``) signed with the routes file's marker secret over ``POST``, the
path and the body's SHA-256: nothing is decoded before that check. **Mirrors** from an engine
are the client's request itself; the comparator asks the monolith for the baseline first
(engines do not pass the answer on), and takes them only with the mirror token (a key derived
from the marker secret, :func:`mirror_token`) as the header ``X-Strangler-Comparator-Token`` or
as a path prefix ``/_strangler/t/TOKEN`` (for engines that cannot add headers: put it in
``comparator_url``). Only safe methods are mirrored; only routes in shadow mode are compared.
Every request is answered at once (202/204), before any comparison: a mirror never waits.

The routes file is re-read when it changes (the last good one stays); the diff store is the
one it names, so ``strangler shadow report``, the gate and rollouts read the comparator's
records exactly as the proxy's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import marshal
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import httptools

from strangler_proxy.config import MONOLITH, ProxyConfig, Route, load_config
from strangler_proxy.errors import ProxyError, StartupError
from strangler_proxy.exchange import (
    RecordedRequest,
    RecordedResponse,
    ShadowOffer,
    offer_from_message,
)
from strangler_proxy.routing import RouteTable
from strangler_proxy.shadow.copies import COPY_KIND, Copy, decode, route_of
from strangler_proxy.shadow.sink import FRAME_HEADER, SAFE_METHODS
from strangler_proxy.shadow.store import DiffStore, open_config_store
from strangler_proxy.shadow.worker import (
    WORKER_STARVED,
    ShadowRunner,
    _Job,
    body_limit,
    build_request,
    send,
)
from strangler_proxy.shadow_marker import check_marker, sign_marker

log = logging.getLogger("strangler.comparator")

DEFAULT_LISTEN: Final = "127.0.0.1:8090"
OFFERS_PATH: Final = "/_strangler/offers"
# in the answer to a batch: "TAKEN SENT", of its copy records (what the proxy paces itself by)
TOOK_HEADER: Final = "X-Strangler-Comparator-Took"
IDLE_PATH: Final = "/_strangler/idle"
HEALTH_PATH: Final = "/_strangler/health"
METRICS_PATH: Final = "/_strangler/metrics"  # not /metrics: that may be a mirrored path
TOKEN_PREFIX: Final = "/_strangler/t/"
AUTH_HEADER: Final = "X-Strangler-Comparator-Auth"
TOKEN_HEADER: Final = "X-Strangler-Comparator-Token"
MIRROR_ROUTE_HEADER: Final = "x-strangler-mirror-route"  # as export/plan.py sends it
_FETCH_BASELINE: Final = "strangler.comparator.fetch_baseline"
_MAX_BATCH_BYTES: Final = 64 * 1024 * 1024
_RELOAD_SECONDS: Final = 1.0


def mirror_token(secret: str) -> str:
    """The token engines send with mirrors: derived from the marker secret, never the secret.

    A leaked engine config then lets one send mirrors (real comparisons), not sign markers.

    >>> mirror_token("s") == mirror_token("s") != mirror_token("t")
    True
    """
    return hmac.new(secret.encode(), b"strangler comparator mirror v1",
                    hashlib.sha256).hexdigest()[:40]


def batch_auth(secret: str, path: str, body: bytes, now: float | None = None) -> str:
    """The ``X-Strangler-Comparator-Auth`` value for a batch: a marker over POST, path, body."""
    return sign_marker(secret, "POST", f"{path}#{hashlib.sha256(body).hexdigest()}", now)


def check_batch_auth(value: str | None, secret: str | None, path: str, body: bytes,
                     skew: float) -> str:
    """Why a batch's auth header is not valid ("" when it is); see :func:`batch_auth`."""
    return check_marker(value, secret, "POST", f"{path}#{hashlib.sha256(body).hexdigest()}",
                        skew=skew)


class ComparatorRunner(ShadowRunner):
    """A :class:`ShadowRunner` that also compares bare mirrored requests.

    A mirror has no answer from the monolith, so its offer is marked and :meth:`_process`
    asks the monolith for the baseline first (as the same copy the noise repeat is); then
    the runner's own path runs: copy to the service, maybe repeat, compare, store.
    """

    # shadow.comparator_max_per_second's token bucket (over_rate)
    _tokens: float = 0.0
    _bucket_at: float | None = None

    def reconfigure(self, config: ProxyConfig) -> None:
        """The runner's reconfigure, plus the route table mirrors are matched against.

        With ``shadow.comparator_baseline_url``, baselines and noise repeats go to that
        instance: its URL takes the place of the monolith's (path prefix kept) here only.
        """
        self.table = RouteTable(config)
        super().reconfigure(baseline_config(config))

    def mirror(self, request: RecordedRequest, route_name: str) -> bool:
        """Queue a mirrored request for comparison, or count why not (never raises)."""
        try:
            route = self._route_of(request, route_name)
            reason = self._mirror_refusal(request, route)
            if reason or route is None:
                self._count(route.name if route else route_name or "-", reason)
                return False
            offer = ShadowOffer(route.name, route.match.describe, route.target, request,
                                RecordedResponse(0, ()), {_FETCH_BASELINE: "1"})
            return self.offer(offer)
        except Exception:  # noqa: BLE001 - a bad mirror must not stop the comparator
            log.exception("mirror failed")
            self._count(route_name or "-", "dropped_internal_error")
            return False

    def copied(self, copy: Copy) -> bool:
        """Queue a request-only copy from our proxy (:mod:`.copies`), or count why not.

        The proxy decided it was a shadowed, sampled, safe request; this side checks what it
        can (the route and its service, the method, the body's size) and asks the monolith
        for the baseline, as for a mirror.
        """
        route = self._routes.get(copy.route)
        request = copy.request
        if route is None or route.target == MONOLITH or route.target not in \
                self.config.upstreams or MONOLITH not in self.config.upstreams:
            reason = "skipped_no_service"
        elif request.method.upper() not in SAFE_METHODS:  # never asked again: never taken
            reason = "skipped_unsafe_method"
        elif request.body_truncated or len(request.body) > body_limit(self.config, route):
            reason = "skipped_body_too_large"
        else:
            return self.offer(ShadowOffer(route.name, route.match.describe, route.target,
                                          request, RecordedResponse(0, ()),
                                          {_FETCH_BASELINE: "1"}))
        self._count(copy.route, reason)
        return False

    def full(self) -> bool:
        """Whether the next offer would be dropped for want of room in the queue."""
        queue = self._queue
        return queue is not None and queue.full()

    def over_rate(self, now: float) -> bool:
        """Whether taking one more copy now would pass ``shadow.comparator_max_per_second``.

        A token bucket holding one second of the rate: under the cap it takes a token.
        """
        rate = self.config.shadow.comparator_max_per_second
        if rate <= 0:
            return False
        last = self._bucket_at
        tokens = rate if last is None else min(rate, self._tokens + (now - last) * rate)
        self._bucket_at = now
        if tokens < 1.0:
            self._tokens = tokens
            return True
        self._tokens = tokens - 1.0
        return False

    def count_drop(self, route: str, reason: str) -> None:
        """Count a copy dropped before it was decoded."""
        self._count(route, reason)

    def _route_of(self, request: RecordedRequest, route_name: str) -> Route | None:
        if route_name:
            return self.config.route(route_name)
        headers = {k.lower().encode("latin-1"): v.encode("latin-1") for k, v in request.headers}
        route: Route = self.table.match(request.method, request.path, headers).route
        return route if route.name in self._routes else None

    def _mirror_refusal(self, request: RecordedRequest, route: Route | None) -> str:
        if route is None:
            return "skipped_no_route"
        if route.mode != "shadow":
            return "skipped_not_shadow"
        if route.target == MONOLITH or route.target not in self.config.upstreams \
                or MONOLITH not in self.config.upstreams:
            return "skipped_no_service"
        if request.method.upper() not in SAFE_METHODS:  # an engine's copy has no marker
            return "skipped_unsafe_method"
        if request.body_truncated or len(request.body) > body_limit(self.config, route):
            return "skipped_body_too_large"
        return ""

    async def _process(self, job: _Job) -> None:
        if _FETCH_BASELINE in job.offer.extra:
            offer = await self._with_baseline(job.offer)
            if offer is None:
                return
            job = replace(job, offer=offer)
        await super()._process(job)

    async def _with_baseline(self, offer: ShadowOffer) -> ShadowOffer | None:
        assert self._client is not None
        route = self._routes.get(offer.route)
        monolith = self.config.upstreams.get(MONOLITH)
        if route is None or monolith is None:
            self._count(offer.route, "skipped_no_service")
            return None
        outgoing = build_request(offer.request, monolith, repeat=True, secret=self._secret)
        baseline = await send(self._client, outgoing, self.config.shadow.timeout,
                              body_limit(self.config, route))
        if baseline.error:
            self._count(offer.route, "dropped_worker_starved" if baseline.error ==
                        WORKER_STARVED else "skipped_primary_error")
            return None
        extra = {k: v for k, v in offer.extra.items() if k != _FETCH_BASELINE}
        return replace(offer, primary=baseline, extra=extra)


# -- the HTTP side -------------------------------------------------------------------------------

Reply = bytes | Awaitable[bytes]


def baseline_config(config: ProxyConfig) -> ProxyConfig:
    """``config`` with the monolith at ``shadow.comparator_baseline_url``, when it is set."""
    url = config.shadow.comparator_baseline_url
    monolith = config.upstreams.get(MONOLITH)
    if not url or monolith is None:
        return config
    parts = urlsplit(url)  # its own path, if any, gives way to the monolith's prefix
    moved = f"{parts.scheme}://{parts.netloc}{monolith.base_path}"
    upstreams = {**config.upstreams, MONOLITH: replace(monolith, url=moved)}
    return replace(config, upstreams=upstreams)


def reply(status: int, body: bytes = b"", content_type: str = "application/json",
          extra: str = "") -> bytes:
    """A complete HTTP/1.1 answer (``extra``: more header lines, each ending in CRLF)."""
    reason = {200: "OK", 202: "Accepted", 204: "No Content", 400: "Bad Request",
              401: "Unauthorized", 404: "Not Found", 413: "Content Too Large"}.get(status, "")
    head = f"HTTP/1.1 {status} {reason}\r\n{extra}"
    if status != 204:  # RFC 9110 §8.6: never on a 204
        head += f"Content-Length: {len(body)}\r\n"
    if body:
        head += f"Content-Type: {content_type}\r\n"
    return (head + "\r\n").encode("latin-1") + body


def _error(status: int, message: str) -> bytes:
    return reply(status, json.dumps({"error": message}).encode())


class Comparator:
    """What the port does with each request (one instance per ``strangler shadow serve``)."""

    def __init__(self, runner: ComparatorRunner, auth: bool = True) -> None:
        self.runner = runner
        self.auth = auth

    @property
    def secret(self) -> str | None:
        return self.runner.config.shadow.resolve_marker_secret(os.environ)

    def handle(self, method: str, target: str, headers: list[tuple[str, str]],
               body: bytes, truncated: bool, peer: str) -> Reply:
        """Answer one request: batches and control paths by name, anything else is a mirror."""
        path, _, query = target.partition("?")
        if path == HEALTH_PATH:
            return reply(200, b'{"ok": true}')
        if path == METRICS_PATH:
            return reply(200, self.runner.prometheus_text().encode(), "text/plain; version=0.0.4")
        if path in (OFFERS_PATH, IDLE_PATH):
            problem = self._batch_problem(method, path, headers, body, truncated)
            if problem:
                log.warning("refused %s %s from %s: %s", method, path, peer, problem)
                return _error(401 if "auth" in problem else 400, problem)
            return self._offers(body) if path == OFFERS_PATH else self._idle(body)
        return self._mirror(method, path, query, headers, body, truncated, peer)

    def _batch_problem(self, method: str, path: str, headers: list[tuple[str, str]],
                       body: bytes, truncated: bool) -> str:
        if method != "POST":
            return f"{path} takes POST, not {method}"
        if truncated:
            return f"batch over {_MAX_BATCH_BYTES} bytes"
        if not self.auth:
            return ""
        value = _header(headers, AUTH_HEADER)
        why = check_batch_auth(value, self.secret, path, body,
                               self.runner.config.shadow.marker_skew)
        return f"bad {AUTH_HEADER} auth ({why}); both ends need the same " \
               "shadow.marker_secret" if why else ""

    def _offers(self, body: bytes) -> bytes:
        """Take a batch; the answer says how many of its copies were taken (TOOK_HEADER).

        The proxy scales how many copies it makes to that (``remote.Pace``), so that at
        more traffic than this comparator can compare it does not copy what would be dropped.
        """
        view, at, start, copies, full = memoryview(body), 0, 0, 0, 0
        now = time.monotonic()
        config = self.runner.config
        monolith = config.upstreams.get(MONOLITH)
        base_path = monolith.base_path if monolith is not None else ""
        try:
            while at < len(body):
                start = at
                (size,) = FRAME_HEADER.unpack_from(view, at)
                frame = view[at + FRAME_HEADER.size:at + FRAME_HEADER.size + size]
                if len(frame) < size:
                    raise ValueError(f"a frame of {size} bytes, {len(frame)} in the batch")
                at += FRAME_HEADER.size + size
                if size and frame[0] == COPY_KIND:  # a request-only copy (copies.py)
                    copies += 1
                    if self.runner.full():  # no room: not even decoded
                        self.runner.count_drop(route_of(frame), "dropped_queue_full")
                        full += 1
                    elif self.runner.over_rate(now):
                        self.runner.count_drop(route_of(frame), "dropped_rate_limited")
                        full += 1
                    else:
                        self.runner.copied(decode(frame, base_path,
                                                  config.proxy.trusted_proxies))
                    continue
                message = marshal.loads(frame)
                if not isinstance(message, tuple) or not message:
                    raise TypeError(f"a frame holds a tuple, not {type(message).__name__}")
                if message[0] == "offer":
                    self.runner.offer(offer_from_message(message))
                elif message[0] == "counts":
                    self.runner.add_counts(message[1])
        except (ValueError, EOFError, TypeError, IndexError, KeyError) as exc:
            return _error(400, f"bad frame at byte {start}: {exc}")
        # copies skipped for other reasons (no service, say) count as taken: room and the
        # rate cap pace
        return reply(204, extra=f"{TOOK_HEADER}: {copies - full} {copies}\r\n" if copies else "")

    async def _idle_answer(self, timeout: float) -> bytes:
        idle = await self.runner.wait_idle(timeout)
        await self.runner.flush()
        return reply(200, json.dumps({"idle": idle}).encode())

    def _idle(self, body: bytes) -> Reply:
        try:
            timeout = min(float(json.loads(body or b"{}").get("timeout", 5.0)), 300.0)
        except (ValueError, AttributeError):
            return _error(400, 'the body is {"timeout": SECONDS}')
        return self._idle_answer(timeout)

    def _mirror(self, method: str, path: str, query: str, headers: list[tuple[str, str]],
                body: bytes, truncated: bool, peer: str) -> bytes:
        token = _header(headers, TOKEN_HEADER) or ""
        if path.startswith(TOKEN_PREFIX):
            token, _, rest = path[len(TOKEN_PREFIX):].partition("/")
            path = "/" + rest
        if self.auth:
            secret = self.secret
            if not secret or not hmac.compare_digest(token.encode(), mirror_token(secret)
                                                     .encode()):
                log.warning("refused a mirror of %s %s from %s: no valid mirror token", method,
                            path, peer)
                return _error(401, f"mirrors need the mirror token ({TOKEN_HEADER} or "
                                   f"{TOKEN_PREFIX}TOKEN/...); see `strangler shadow serve "
                                   "--print-mirror-token`")
        route = _header(headers, MIRROR_ROUTE_HEADER) or ""
        kept = tuple((k, v) for k, v in headers if not k.lower().startswith("x-strangler-"))
        request_id = _header(headers, "x-request-id") or ""
        request = RecordedRequest(method, path, query, kept, body, truncated,
                                  request_id, peer)
        self.runner.mirror(request, route)
        return reply(202)


def _header(headers: list[tuple[str, str]], name: str) -> str | None:
    lower = name.lower()
    return next((v for k, v in headers if k.lower() == lower), None)


class _Connection(asyncio.Protocol):
    """One client connection: llhttp parses, answers leave in request order."""

    def __init__(self, comparator: Comparator, max_body: int) -> None:
        self.comparator = comparator
        self.max_body = max_body
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.peer = ""
        self.tail: asyncio.Task[None] | None = None
        self._reset()

    def _reset(self) -> None:
        self.url = b""
        self.headers: list[tuple[str, str]] = []
        self.body: list[bytes] = []
        self.size = 0
        self.truncated = False

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else ""

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._send(_error(400, "no upgrades here"), close=True)
        except httptools.HttpParserError as exc:
            self._send(_error(400, f"bad request: {exc}"), close=True)

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_body(self, body: bytes) -> None:
        room = self.max_body - self.size
        if len(body) > room:
            self.truncated = True
            body = body[:max(room, 0)]
        self.body.append(body)
        self.size += len(body)

    def on_message_complete(self) -> None:
        method = self.parser.get_method().decode("latin-1")
        keep = self.parser.should_keep_alive()
        try:
            answer = self.comparator.handle(method, self.url.decode("latin-1"), self.headers,
                                            b"".join(self.body), self.truncated, self.peer)
        except Exception:  # noqa: BLE001 - one bad request must not take the port down
            log.exception("request failed")
            answer = _error(400, "internal error")
        self._reset()
        self._send(answer, close=not keep)

    def _send(self, answer: Reply, close: bool = False) -> None:
        if isinstance(answer, bytes) and self.tail is None:
            self._write(answer, close)
            return
        previous = self.tail

        async def in_order() -> None:
            if previous is not None:
                await previous
            data = answer if isinstance(answer, bytes) else await answer
            self._write(data, close)

        task = asyncio.get_running_loop().create_task(in_order())
        self.tail = task
        task.add_done_callback(lambda done: self._clear(done))

    def _clear(self, done: asyncio.Task[None]) -> None:
        if self.tail is done:
            self.tail = None

    def _write(self, data: bytes, close: bool) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        transport.write(data)
        if close:
            transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


class ComparatorServer:
    """The comparator on a port: the runner, the listener, the routes-file watcher."""

    def __init__(self, config_path: str | Path, listen: str = DEFAULT_LISTEN,
                 auth: bool = True,
                 store_factory: Callable[[Any], DiffStore] = open_config_store) -> None:
        self.config_path = Path(config_path)
        config = load_config(self.config_path)
        host, _, port = listen.rpartition(":")
        self.host, self.port = host.strip("[]") or "127.0.0.1", int(port or 0)
        if not auth and not _loopback(self.host):
            raise StartupError(f"--insecure-no-auth on {listen}: anyone who reaches the port "
                               "could fill the diff store; bind 127.0.0.1 or set "
                               "shadow.marker_secret")
        if auth and not config.shadow.resolve_marker_secret(os.environ):
            raise StartupError(f"{self.config_path}: the comparator authenticates senders with "
                               "shadow.marker_secret (or marker_secret_env); set one (the proxy "
                               "and the services need it too), or pass --insecure-no-auth")
        self.runner = ComparatorRunner(config, store_factory=store_factory, prefiltered=True)
        self.comparator = Comparator(self.runner, auth)
        self.server: asyncio.Server | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._mtime = _mtime(self.config_path)

    @property
    def address(self) -> str:
        """``host:port`` the comparator listens on (the real port once started)."""
        assert self.server is not None
        host, port = self.server.sockets[0].getsockname()[:2]
        return f"{host}:{port}"

    async def start(self) -> None:
        """Open the store, start the runner, listen (StartupError when it cannot)."""
        try:
            await self.runner.start()
        except ProxyError:
            raise
        except Exception as exc:
            raise StartupError(f"cannot open the diff store: {exc}") from None
        max_body = self.runner.config.shadow.max_body_bytes + 1
        loop = asyncio.get_running_loop()
        try:
            self.server = await loop.create_server(
                lambda: _Connection(self.comparator, max(max_body, _MAX_BATCH_BYTES)),
                self.host, self.port, backlog=1024)
        except OSError as exc:
            await self.runner.stop(0)
            raise StartupError(f"cannot listen on {self.host}:{self.port}: "
                               f"{exc.strerror or exc} (use --listen HOST:PORT)") from None
        self._watcher = loop.create_task(self._watch())

    async def _watch(self) -> None:
        """Re-read the routes file when it changes; a bad one leaves the last good in use."""
        while True:
            await asyncio.sleep(_RELOAD_SECONDS)
            mtime = _mtime(self.config_path)
            if mtime == self._mtime:
                continue
            self._mtime = mtime
            try:
                config = await asyncio.to_thread(load_config, self.config_path)
            except ProxyError as exc:
                log.error("routes file not reloaded, the last good one stays: %s", exc)  # noqa: TRY400
                continue
            self.runner.reconfigure(config)
            log.warning("routes file reloaded")

    async def stop(self, drain_seconds: float = 2.0) -> None:
        """Stop listening, finish queued comparisons (up to ``drain_seconds``), flush."""
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
        await self.runner.stop(drain_seconds)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return -1.0


def _loopback(host: str) -> bool:
    return host in ("127.0.0.1", "::1", "localhost") or host.startswith("127.")


async def serve_until(server: ComparatorServer, stop: asyncio.Event,
                      ready: Callable[[str], None]) -> None:
    """Start, report the address, run until ``stop`` is set, then drain and stop."""
    await server.start()
    try:
        ready(server.address)
        await stop.wait()
    finally:
        await server.stop()


__all__ = ["AUTH_HEADER", "DEFAULT_LISTEN", "IDLE_PATH", "OFFERS_PATH", "TOKEN_HEADER",
           "TOKEN_PREFIX", "TOOK_HEADER", "Comparator", "ComparatorRunner", "ComparatorServer",
           "batch_auth", "check_batch_auth", "mirror_token", "serve_until"]
