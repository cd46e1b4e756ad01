"""The shadow sink: copies requests to the service off the client's path, compares, stores.

The proxy calls :meth:`ShadowRunner.offer` after the client has its answer from the
monolith. ``offer`` never blocks and never raises: it checks the route's sampling percent,
method and body size, then puts the job on a bounded queue, or drops it and counts why.
A few worker tasks (``[shadow].concurrency``) take jobs off the queue, send the copy to the
route's service with their own connection pool and timeout, and, for a sampled share of
safe requests (``[shadow].noise_percent``), send the request to the monolith a second time
so noise can be learned. Each answer is compared (:mod:`strangler_proxy.compare`), redacted
and handed to a writer task that stores records in batches from a thread.

Safety: only GET, HEAD and OPTIONS are copied unless the route sets ``shadow.writes = true``;
every copy carries ``X-Strangler-Shadow: 1``; repeats to the monolith are only ever sent for
safe methods.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import httpx

from strangler_proxy.compare import Comparison, compare, decode_body
from strangler_proxy.compare_rules import Rules, compile_rules
from strangler_proxy.exchange import Headers, RecordedRequest, RecordedResponse, ShadowOffer
from strangler_proxy.noise import template_for
from strangler_proxy.store import (
    DiffRecord,
    DiffStore,
    Redaction,
    open_config_store,
    redact_record,
)

if TYPE_CHECKING:
    from strangler_proxy.config import ProxyConfig

log = logging.getLogger("strangler.shadow")

SHADOW_HEADER: Final = "X-Strangler-Shadow"
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
MONOLITH: Final = "monolith"
_DROP_HEADERS: Final = frozenset({"host", "content-length", "connection", "keep-alive",
                                  "proxy-connection", "te", "trailer", "transfer-encoding",
                                  "upgrade", SHADOW_HEADER.lower()})
_BIG_BODY: Final = 64 * 1024  # compare bodies above this in a thread, not on the loop
_BATCH: Final = 500
_FLUSH_SECONDS: Final = 1.0


@dataclass(frozen=True, slots=True)
class OutgoingRequest:
    """A request as one side will receive it."""

    method: str
    url: str
    headers: Headers
    body: bytes


@dataclass(frozen=True, slots=True)
class _Job:
    offer: ShadowOffer
    repeat_monolith: bool
    queued_at: float


def rewrite_path(path: str, match_prefix: str | None, new_prefix: str | None) -> str:
    """The path the service expects: the route's prefix swapped for the rewrite prefix.

    >>> rewrite_path("/api/products/7/", "/api/products/", "/products/")
    '/products/7/'
    >>> rewrite_path("/api/x", None, "/v2")
    '/v2/api/x'
    """
    if not new_prefix:
        return path
    if match_prefix and path.startswith(match_prefix):
        return new_prefix + path[len(match_prefix):]
    return new_prefix.rstrip("/") + path


def build_request(request: RecordedRequest, upstream: Any, route: Any | None = None,
                  repeat: bool = False) -> OutgoingRequest:
    """The copy of ``request`` for ``upstream``: rewritten per the route, marked as shadow.

    ``repeat`` builds the second monolith request (no route rewriting).
    """
    rewrite = None if repeat or route is None else route.shadow.rewrite
    prefix = None if route is None else route.match.path_prefix
    path = rewrite_path(request.path, prefix, rewrite.path_prefix if rewrite else None)
    base = str(upstream.url).rstrip("/")
    url = base + path + (f"?{request.query}" if request.query else "")
    headers = [(k, v) for k, v in request.headers if k.lower() not in _DROP_HEADERS]
    host = _host_for(request, upstream, rewrite)
    if rewrite is not None and rewrite.authorization is not None:
        headers = [(k, v) for k, v in headers if k.lower() != "authorization"]
        if rewrite.authorization:
            headers.append(("Authorization", rewrite.authorization))
    headers += [("Host", host), (SHADOW_HEADER, "1")]
    return OutgoingRequest(request.method.upper(), url, tuple(headers), request.body)


def _host_for(request: RecordedRequest, upstream: Any, rewrite: Any) -> str:
    if rewrite is not None and rewrite.host:
        return str(rewrite.host)
    original = next((v for k, v in request.headers if k.lower() == "host"), "")
    if getattr(upstream, "host", "keep") == "rewrite" or not original:
        return str(upstream.netloc)
    return original


def make_record(offer: ShadowOffer, baseline: RecordedResponse, other: RecordedResponse,
                comparison: Comparison, kind: str = "service",
                origin: str = "proxy") -> DiffRecord:
    """The diff record for one comparison (not yet redacted). Bodies kept for mismatches."""
    keep = not comparison.matched
    request = offer.request
    return DiffRecord(
        route=offer.route, template=template_for(offer.route_template, request.path),
        method=request.method.upper(), path=request.path, query=request.query,
        verdict=comparison.verdict, monolith_status=baseline.status,
        service_status=other.status,
        differences=tuple(d.to_dict() for d in comparison.differences), kind=kind,
        origin=origin, request_id=request.request_id, request_headers=request.headers,
        request_body=request.body if keep else b"", monolith_ms=baseline.elapsed_ms,
        service_ms=other.elapsed_ms, monolith_headers=baseline.headers,
        service_headers=other.headers,
        monolith_body=decode_body(baseline)[0] if keep else b"",
        service_body=decode_body(other)[0] if keep else b"",
        error=other.error or baseline.error,
    )


async def send(client: httpx.AsyncClient, outgoing: OutgoingRequest, timeout: float,
               max_body: int) -> RecordedResponse:
    """Send a request and record the answer (raw bytes, capped); failures become ``error``."""
    start = time.perf_counter()
    try:
        async with asyncio.timeout(timeout):
            return await _exchange(client, outgoing, max_body, start)
    except TimeoutError:
        return RecordedResponse(0, (), elapsed_ms=_ms(start), error="timeout")
    except httpx.ConnectError as exc:
        return RecordedResponse(0, (), elapsed_ms=_ms(start), error=f"connect: {exc}"[:200])
    except httpx.TimeoutException:
        return RecordedResponse(0, (), elapsed_ms=_ms(start), error="timeout")
    except (httpx.HTTPError, OSError) as exc:
        reason = f"{type(exc).__name__}: {exc}"[:200]
        return RecordedResponse(0, (), elapsed_ms=_ms(start), error=reason)


async def _exchange(client: httpx.AsyncClient, outgoing: OutgoingRequest, max_body: int,
                    start: float) -> RecordedResponse:
    request = client.build_request(outgoing.method, outgoing.url,
                                   headers=list(outgoing.headers), content=outgoing.body)
    response = await client.send(request, stream=True)
    try:
        chunks: list[bytes] = []
        size, truncated = 0, False
        async for chunk in response.aiter_raw():
            chunks.append(chunk)
            size += len(chunk)
            if size > max_body:
                truncated = True
                break
        body = b"".join(chunks)[:max_body]
    finally:
        await response.aclose()
    headers = tuple((k.decode("latin-1"), v.decode("latin-1"))
                    for k, v in response.headers.raw)
    return RecordedResponse(response.status_code, headers, body, truncated, _ms(start))


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000


class ShadowRunner:
    """The shadow sink the proxy offers exchanges to (see the module docstring)."""

    def __init__(self, config: ProxyConfig,
                 store_factory: Callable[[Any], DiffStore] = open_config_store,
                 rng: Callable[[], float] = random.random) -> None:
        self._store_factory = store_factory
        self._rng = rng
        self.counts: defaultdict[tuple[str, str], int] = defaultdict(int)
        self._unflushed: defaultdict[tuple[str, str], int] = defaultdict(int)
        self._queue: asyncio.Queue[_Job] | None = None
        self._records: asyncio.Queue[DiffRecord] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._client: httpx.AsyncClient | None = None
        self.store: DiffStore | None = None
        self._pending = 0
        self.reconfigure(config)

    # configuration
    def reconfigure(self, config: ProxyConfig) -> None:
        """Take a new routes file (routes, rules, sampling); store and pool stay as they are."""
        self.config = config
        self._routes = {r.name: r for r in config.routes}
        self._rules: dict[str, Rules] = {r.name: compile_rules(r.compare)
                                         for r in config.routes}
        s = config.shadow
        self._redaction = Redaction.from_settings(s.redact_headers, s.redact_fields)

    # the hot path
    def offer(self, offer: ShadowOffer) -> bool:
        """Queue the exchange for comparison, or drop it and count why. Never blocks/raises."""
        try:
            return self._offer(offer)
        except Exception:  # noqa: BLE001 - the client's path must never see our failures
            log.exception("shadow offer failed")
            self._count(offer.route, "dropped_internal_error")
            return False

    def _offer(self, offer: ShadowOffer) -> bool:
        route = self._routes.get(offer.route)
        reason = self._refusal(offer, route)
        if reason:
            self._count(offer.route, reason)
            return False
        if self._queue is None:
            self._start_tasks()
        assert self._queue is not None
        method = offer.request.method.upper()
        noise = self.config.shadow.noise_percent
        repeat = method in SAFE_METHODS and noise > 0 and self._rng() * 100 < noise
        try:
            self._queue.put_nowait(_Job(offer, repeat, time.monotonic()))
        except asyncio.QueueFull:
            self._count(offer.route, "dropped_queue_full")
            return False
        self._count(offer.route, "accepted")
        return True

    def _refusal(self, offer: ShadowOffer, route: Any) -> str:
        if route is None or route.target == MONOLITH or route.target not in self.config.upstreams:
            return "skipped_no_service"
        if offer.request.method.upper() not in SAFE_METHODS and not route.shadow.writes:
            return "skipped_unsafe_method"
        if offer.primary.error:
            return "skipped_primary_error"
        cap = route.shadow.max_body_bytes
        cap = self.config.shadow.max_body_bytes if cap is None else cap
        if offer.request.body_truncated or len(offer.request.body) > cap:
            return "skipped_body_too_large"
        if route.shadow.percent < 100 and self._rng() * 100 >= route.shadow.percent:
            return "skipped_sampling"
        return ""

    def _count(self, route: str, name: str, amount: int = 1) -> None:
        self.counts[(route, name)] += amount
        self._unflushed[(route, name)] += amount

    # lifecycle
    async def start(self) -> None:
        """Open the store and start the workers (the proxy calls this once its loop runs)."""
        if self.store is None:
            self.store = await asyncio.to_thread(self._store_factory, self.config)
        if self._queue is None:
            self._start_tasks()

    def _start_tasks(self) -> None:
        s = self.config.shadow
        self._queue = asyncio.Queue(maxsize=s.queue_size)
        self._records = asyncio.Queue(maxsize=max(s.queue_size, _BATCH) * 4)
        limits = httpx.Limits(max_connections=s.concurrency * 2,
                              max_keepalive_connections=s.concurrency * 2)
        self._client = httpx.AsyncClient(limits=limits, timeout=s.timeout, trust_env=False,
                                         follow_redirects=False)
        self._tasks = [asyncio.create_task(self._worker()) for _ in range(s.concurrency)]
        self._tasks.append(asyncio.create_task(self._writer()))

    async def stop(self, drain_seconds: float = 2.0) -> None:
        """Let queued work finish for a moment, flush the store, close everything."""
        deadline = time.monotonic() + drain_seconds
        while (self._queue is not None and (self._queue.qsize() or self._pending)
               and time.monotonic() < deadline):
            await asyncio.sleep(0.02)
        while self._records is not None and self._records.qsize() and \
                time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await self._flush(self._drain_records())
        if self._client is not None:
            await self._client.aclose()
        if self.store is not None:
            await asyncio.to_thread(self.store.close)
        self._queue = self._records = None
        self._client = None
        self.store = None

    async def wait_idle(self, timeout: float = 5.0) -> None:
        """Wait until queued jobs are compared and stored (for tests and the replay)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            busy = (self._queue is not None and self._queue.qsize()) or self._pending or (
                self._records is not None and self._records.qsize())
            if not busy:
                return
            await asyncio.sleep(0.01)

    # workers
    async def _worker(self) -> None:
        assert self._queue is not None
        while True:
            job = await self._queue.get()
            self._pending += 1
            try:
                await self._process(job)
            except Exception:  # noqa: BLE001 - one bad exchange must not stop the worker
                log.exception("shadow comparison failed for route %s", job.offer.route)
                self._count(job.offer.route, "dropped_internal_error")
            finally:
                self._pending -= 1

    async def _process(self, job: _Job) -> None:
        offer = job.offer
        route = self._routes.get(offer.route)
        if route is None:
            self._count(offer.route, "skipped_no_service")
            return
        assert self._client is not None
        s = self.config.shadow
        calls = [send(self._client, build_request(offer.request, self.config.upstreams[
            route.target], route), s.timeout, s.max_body_bytes)]
        if job.repeat_monolith and MONOLITH in self.config.upstreams:
            calls.append(send(self._client, build_request(
                offer.request, self.config.upstreams[MONOLITH], repeat=True), s.timeout,
                s.max_body_bytes))
        answers = await asyncio.gather(*calls)
        rules = self._rules.get(offer.route) or compile_rules()
        self._finish(offer, answers[0], rules, "service")
        if len(answers) > 1 and not answers[1].error:
            self._finish(offer, answers[1], rules, "self")

    def _finish(self, offer: ShadowOffer, answer: RecordedResponse, rules: Rules,
                kind: str) -> None:
        comparison = compare(offer.primary, answer, rules)
        if answer.error:
            self._count(offer.route, "service_timeout" if answer.error == "timeout"
                        else "service_error")
        self._count(offer.route, f"{kind}_{comparison.verdict}")
        record = redact_record(make_record(offer, offer.primary, answer, comparison, kind),
                               self._redaction)
        assert self._records is not None
        try:
            self._records.put_nowait(record)
        except asyncio.QueueFull:
            self._count(offer.route, "dropped_store_backlog")

    async def _writer(self) -> None:
        assert self._records is not None
        while True:
            try:  # wake up now and then, so drop counters reach the store without records
                first = await asyncio.wait_for(self._records.get(), timeout=_FLUSH_SECONDS)
                batch = [first, *self._drain_records()]
            except TimeoutError:
                batch = []
            await self._flush(batch)

    def _drain_records(self) -> list[DiffRecord]:
        batch: list[DiffRecord] = []
        while self._records is not None and not self._records.empty() and len(batch) < _BATCH:
            batch.append(self._records.get_nowait())
        return batch

    async def _flush(self, batch: list[DiffRecord]) -> None:
        counts, self._unflushed = dict(self._unflushed), defaultdict(int)
        if not batch and not counts:
            return
        try:
            if self.store is None:
                self.store = await asyncio.to_thread(self._store_factory, self.config)
            await asyncio.to_thread(_write, self.store, batch, counts)
        except Exception:  # noqa: BLE001 - a store hiccup loses records, never the proxy
            log.exception("diff store write failed; %d records lost", len(batch))
            for record in batch:
                self.counts[(record.route, "dropped_store_error")] += 1

    # metrics
    def prometheus_text(self) -> str:
        """Counters and queue depth in the Prometheus text format (appended to /metrics)."""
        lines = ["# HELP strangler_shadow_events_total Shadow sink events by route and event.",
                 "# TYPE strangler_shadow_events_total counter"]
        for (route, name), value in sorted(self.counts.items()):
            lines.append(f'strangler_shadow_events_total{{route="{_esc(route)}",'
                         f'event="{name}"}} {value}')
        depth = self._queue.qsize() if self._queue is not None else 0
        lines += ["# HELP strangler_shadow_queue_depth Jobs waiting for a shadow worker.",
                  "# TYPE strangler_shadow_queue_depth gauge",
                  f"strangler_shadow_queue_depth {depth}"]
        return "\n".join(lines) + "\n"


def _write(store: DiffStore, batch: list[DiffRecord],
           counts: Mapping[tuple[str, str], int]) -> None:
    store.add(batch)
    store.add_counts(counts)


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def build_sink(config: ProxyConfig) -> ShadowRunner:
    """Build the shadow sink for a proxy configuration (the proxy's ``app.py`` calls this)."""
    return ShadowRunner(config)


__all__ = ["SAFE_METHODS", "SHADOW_HEADER", "OutgoingRequest", "ShadowRunner", "build_request",
           "build_sink", "make_record", "rewrite_path", "send"]
