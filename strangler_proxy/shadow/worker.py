"""The shadow worker: copy requests to the service, compare, redact, store (off the proxy).

The proxy's :class:`~strangler_proxy.shadow.sink.ProcessSink` starts this module as its own
process (``python -m strangler_proxy.shadow.worker --worker FD --config FILE``) and writes
one frame per offer to it. Here a few tasks (``[shadow].concurrency``) take jobs off a bounded
queue, send the copy to the route's service and, for a sampled share of safe requests
(``[shadow].noise_percent``), send the request to the monolith a second time so noise can be
learned. Each answer is compared (:mod:`strangler_proxy.shadow.compare`), redacted and handed to a
writer task that stores records in batches from a thread. :class:`ShadowRunner` also runs
in-process (tests; the replay reuses :func:`build_request`, :func:`send`, :func:`make_record`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import marshal
import os
import random
import signal
import socket
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from strangler_proxy.config import (
    MONOLITH,
    ProxyConfig,
    Route,
    ShadowRewrite,
    Upstream,
    load_config,
)
from strangler_proxy.errors import ProxyError
from strangler_proxy.exchange import (
    Headers,
    RecordedRequest,
    RecordedResponse,
    ShadowOffer,
    offer_from_message,
)
from strangler_proxy.headers import SHADOW_HEADER
from strangler_proxy.shadow.changes import changes_for, open_outbox, split_changes
from strangler_proxy.shadow.client import ConnectError, HttpClient
from strangler_proxy.shadow.compare import ChangeSet, Comparison, compare, decode_body
from strangler_proxy.shadow.cpu_budget import CpuBudget
from strangler_proxy.shadow.noise import template_for
from strangler_proxy.shadow.rules import Rules, compile_rules
from strangler_proxy.shadow.sink import (
    FRAME_HEADER,
    SAFE_METHODS,
    encode_frame,
    escape_label,
    refusal,
)
from strangler_proxy.shadow.store import (
    DiffRecord,
    DiffStore,
    Redaction,
    open_config_store,
    redact_record,
    store_location,
)
from strangler_proxy.shadow_marker import sign_marker

log = logging.getLogger("strangler.shadow")

_DROP_HEADERS: Final = frozenset({"host", "content-length", "connection", "keep-alive",
                                  "proxy-connection", "te", "trailer", "transfer-encoding",
                                  "upgrade", SHADOW_HEADER.lower(), "x-request-id"})
_CREDENTIALS: Final = frozenset({"authorization", "cookie", "proxy-authorization"})
_BATCH: Final = 500
_FLUSH_SECONDS: Final = 1.0
_COUNTS_SECONDS: Final = 1.0
WORKER_NICE: Final = 19
WORKER_STARVED: Final = "worker_starved"
PRIORITY_ENV: Final = "STRANGLER_SHADOW_WORKER_PRIORITY"  # "idle" (default) or "normal"
_STARVED_SECONDS: Final = 0.25  # a timer this late means the worker did not get the CPU


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


def build_request(request: RecordedRequest, upstream: Upstream, route: Route | None = None,
                  repeat: bool = False, secret: str | None = None,
                  now: float | None = None) -> OutgoingRequest:
    """The copy of ``request`` for ``upstream``: rewritten per the route, marked as shadow.

    ``repeat`` builds the second monolith request (no route rewriting). The marker is signed
    with ``secret`` (``shadow_marker.py``); without one it is ``unsigned``, which services
    ignore (so :func:`unsigned_write` keeps writes from being copied at all). The copy
    carries the ``X-Request-ID`` the monolith got, and the client's credentials only when
    the route's ``shadow.credentials`` allows.
    """
    rewrite = None if repeat or route is None else route.shadow.rewrite
    prefix = None if route is None else route.match.path_prefix
    path = rewrite_path(request.path, prefix, rewrite.path_prefix if rewrite else None)
    base = str(upstream.url).rstrip("/")
    url = base + path + (f"?{request.query}" if request.query else "")
    headers = [(k, v) for k, v in request.headers if k.lower() not in _DROP_HEADERS]
    if route is not None and not repeat and not route.shadow.credentials:
        headers = [(k, v) for k, v in headers if k.lower() not in _CREDENTIALS]
    host = _host_for(request, upstream, rewrite)
    if rewrite is not None and rewrite.authorization is not None:
        headers = [(k, v) for k, v in headers if k.lower() != "authorization"]
        if rewrite.authorization:
            headers.append(("Authorization", rewrite.authorization))
    marker = sign_marker(secret, request.method, path, now) if secret else "unsigned"
    headers += [("Host", host), (SHADOW_HEADER, marker)]
    if request.request_id:
        headers.append(("X-Request-ID", request.request_id))
    return OutgoingRequest(request.method.upper(), url, tuple(headers), request.body)


def body_limit(config: ProxyConfig, route: Route | None) -> int:
    """The body bytes kept for comparison on ``route``: its own limit, else [shadow]'s."""
    limit = None if route is None else route.shadow.max_body_bytes
    return config.shadow.max_body_bytes if limit is None else int(limit)


def unsigned_write(method: str, secret: str | None) -> bool:
    """True when a write would be copied with a marker no service honours (no secret):
    such a copy would really write, so it is not sent."""
    return not secret and method.upper() not in SAFE_METHODS


def _host_for(request: RecordedRequest, upstream: Upstream, rewrite: ShadowRewrite | None) -> str:
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


async def send(client: HttpClient, outgoing: OutgoingRequest, timeout: float,
               max_body: int) -> RecordedResponse:
    """Send a request and record the answer (raw bytes, capped); failures become ``error``."""
    start = time.perf_counter()
    try:
        async with asyncio.timeout(timeout):
            answer = await client.request(outgoing.method, outgoing.url, outgoing.headers,
                                          outgoing.body, max_body)
    except TimeoutError:
        return RecordedResponse(0, (), elapsed_ms=_ms(start), error=_timeout_reason(start,
                                                                                   timeout))
    except ConnectError as exc:
        return RecordedResponse(0, (), elapsed_ms=_ms(start), error=f"connect: {exc}"[:200])
    except (OSError, ValueError) as exc:
        reason = f"{type(exc).__name__}: {exc}"[:200]
        return RecordedResponse(0, (), elapsed_ms=_ms(start), error=reason)
    headers = tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in answer.headers)
    return RecordedResponse(answer.status, headers, answer.body, answer.truncated, _ms(start),
                            digest=answer.digest, size=answer.size)


def _timeout_reason(start: float, timeout: float) -> str:
    """"timeout", or :data:`WORKER_STARVED` when the timer fired long after it was due.

    A late timer means this process did not run (the worker is scheduled SCHED_IDLE, so a
    busy machine can starve it): the answer may well have arrived in time and sat unread,
    so the copy says nothing about the service and must not count against it.
    """
    late = time.perf_counter() - start - timeout
    return WORKER_STARVED if late > max(_STARVED_SECONDS, timeout * 0.2) else "timeout"


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000


class ShadowRunner:
    """The shadow sink the proxy offers exchanges to (see the module docstring)."""

    def __init__(self, config: ProxyConfig,
                 store_factory: Callable[[Any], DiffStore] = open_config_store,
                 rng: Callable[[], float] = random.random, prefiltered: bool = False) -> None:
        self._store_factory = store_factory
        self._rng = rng
        self.prefiltered = prefiltered
        self.counts: defaultdict[tuple[str, str], int] = defaultdict(int)
        self._unflushed: defaultdict[tuple[str, str], int] = defaultdict(int)
        self._queue: asyncio.Queue[_Job] | None = None
        self._records: asyncio.Queue[DiffRecord] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._client: HttpClient | None = None
        self.store: DiffStore | None = None
        self._pending = 0
        self._unwritten = 0  # records handed to the writer and not yet stored
        self._store_changed = False
        self.budget = CpuBudget(config.shadow.worker_cpu_percent)
        self.reconfigure(config)

    # configuration
    def reconfigure(self, config: ProxyConfig) -> None:
        """Take a new routes file: routes, rules, sampling at once; a changed store at the
        next write (opened first: one that cannot be opened leaves the old one in use)."""
        previous = getattr(self, "config", None)
        if previous is not None and _store_key(previous) != _store_key(config):
            self._store_changed = True
        if previous is not None and \
                previous.shadow.worker_cpu_percent != config.shadow.worker_cpu_percent:
            self.budget = CpuBudget(config.shadow.worker_cpu_percent)
        self.config = config
        self._routes = {r.name: r for r in config.routes}
        self._rules: dict[str, Rules] = {r.name: compile_rules(r.compare)
                                         for r in config.routes}
        s = config.shadow
        self._redaction = Redaction.from_settings(s.redact_headers, s.redact_fields)
        self._secret = s.resolve_marker_secret(os.environ)
        outbox, current = open_outbox(config), getattr(self, "_outbox", None)
        same = outbox and current and outbox.location == current.location
        self._outbox = current if same else outbox  # a replaced one closes when collected

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

    def _refusal(self, offer: ShadowOffer, route: Route | None) -> str:
        if self.prefiltered:  # the proxy-side ProcessSink already checked and sampled
            return "" if route is not None and route.target in self.config.upstreams \
                else "skipped_no_service"
        return refusal(self.config, route, offer, self._rng)

    def _count(self, route: str, name: str, amount: int = 1) -> None:
        self.counts[(route, name)] += amount
        self._unflushed[(route, name)] += amount

    def add_counts(self, counts: Mapping[tuple[str, str], int]) -> None:
        """Add counters counted elsewhere (the proxy side of a ProcessSink) for storing."""
        for (route, name), value in counts.items():
            self._count(route, name, value)

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
        self._client = HttpClient(max_connections=s.concurrency * 2)
        self._tasks = [asyncio.create_task(self._worker()) for _ in range(s.concurrency)]
        self._tasks.append(asyncio.create_task(self._writer()))

    async def stop(self, drain_seconds: float = 2.0) -> None:
        """Let queued work finish for a moment, flush the store, close everything."""
        deadline = time.monotonic() + drain_seconds
        while (self._queue is not None and (self._queue.qsize() or self._pending)
               and time.monotonic() < deadline):
            await asyncio.sleep(0.02)
        while self._unwritten and time.monotonic() < deadline:
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
        if self._outbox is not None:
            await asyncio.to_thread(self._outbox.close)
        if self.store is not None:
            await asyncio.to_thread(self.store.close)
        self._queue = self._records = None
        self._client = None
        self.store = None

    async def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until queued jobs are compared and stored; False if ``timeout`` ran out first.

        Returns as soon as the runner is idle, so a generous timeout costs nothing when all
        goes well (tests pass one sized for a loaded machine, not for the happy path).
        """
        deadline = time.monotonic() + timeout
        while self.busy():
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    def busy(self) -> bool:
        """Jobs queued or in flight, or records not yet stored."""
        queued = self._queue is not None and self._queue.qsize() > 0
        return queued or self._pending > 0 or self._unwritten > 0

    # workers
    async def _worker(self) -> None:
        assert self._queue is not None
        while True:
            await self.budget.wait()
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
        secret = self._secret
        if unsigned_write(offer.request.method, secret):
            log.warning("shadow write on route %s not copied: no shadow.marker_secret, so the "
                        "service could not tell it from a real write", offer.route)
            self._count(offer.route, "skipped_no_marker_secret")
            return
        limit = body_limit(self.config, route)
        calls = [send(self._client, build_request(offer.request, self.config.upstreams[
            route.target], route, secret=secret), s.timeout, limit)]
        if job.repeat_monolith and MONOLITH in self.config.upstreams:
            calls.append(send(self._client, build_request(
                offer.request, self.config.upstreams[MONOLITH], repeat=True, secret=secret),
                s.timeout, limit))
        answers = await asyncio.gather(*calls)
        if answers[0].error == WORKER_STARVED:  # no verdict: we did not read the answer
            self._count(offer.route, "dropped_worker_starved")
            return
        rules = self._rules.get(offer.route) or compile_rules()
        answer, reported = split_changes(answers[0])  # the header is never stored nor compared
        changes = await changes_for(self._outbox, offer, reported, s.changes_wait)
        self._finish(offer, answer, rules, "service", changes)
        if len(answers) > 1 and not answers[1].error:  # (a starved repeat is skipped too)
            self._finish(offer, answers[1], rules, "self")

    def _finish(self, offer: ShadowOffer, answer: RecordedResponse, rules: Rules,
                kind: str, changes: ChangeSet | None = None) -> None:
        comparison = compare(offer.primary, answer, rules, changes)
        if answer.error:  # why there was no answer; the verdict below counts it as an error
            self._count(offer.route, "service_timeout" if answer.error == "timeout"
                        else "service_call_failed")
        self._count(offer.route, f"{kind}_{comparison.verdict}")
        record = redact_record(make_record(offer, offer.primary, answer, comparison, kind),
                               self._redaction)
        assert self._records is not None
        try:
            self._records.put_nowait(record)
            self._unwritten += 1  # until the writer has stored it (or given up on it)
        except asyncio.QueueFull:
            self._count(offer.route, "dropped_store_backlog")

    async def _writer(self) -> None:
        assert self._records is not None
        while True:
            # wake up now and then, so drop counters reach the store without records.
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow the cancel that
            # stop() sends when a record arrives at the same moment, and stop() then hangs
            try:
                async with asyncio.timeout(_FLUSH_SECONDS):
                    first = await self._records.get()
                batch = [first, *self._drain_records()]
            except TimeoutError:
                batch = []
            await self._flush(batch)

    async def flush(self) -> None:
        """Write queued records and counters now."""
        await self._flush(self._drain_records())

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
            if self._store_changed and self.store is not None:
                await self._swap_store()
            if self.store is None:
                self.store = await asyncio.to_thread(self._store_factory, self.config)
            await asyncio.to_thread(_write, self.store, batch, counts)
        except Exception:  # noqa: BLE001 - a store hiccup loses records, never the proxy
            log.exception("diff store write failed; %d records lost", len(batch))
            for record in batch:
                self.counts[(record.route, "dropped_store_error")] += 1
        finally:
            self._unwritten -= len(batch)

    async def _swap_store(self) -> None:
        """Move to the store the routes file names now; keep the old one if it fails."""
        self._store_changed = False
        location = _store_key(self.config)[0]
        try:
            new = await asyncio.to_thread(self._store_factory, self.config)
        except Exception as exc:  # noqa: BLE001 - a bad new store must not lose the old one
            log.error("cannot open the new diff store %s (%s); still writing to the previous "  # noqa: TRY400
                      "one", location, exc)
            return
        old, self.store = self.store, new
        if old is not None:
            await asyncio.to_thread(old.close)
        log.warning("diff store is now %s", location)

    # metrics
    def prometheus_text(self) -> str:
        """Counters and queue depth in the Prometheus text format (appended to /metrics)."""
        lines = ["# HELP strangler_shadow_events_total Shadow sink events by route and event.",
                 "# TYPE strangler_shadow_events_total counter"]
        for (route, name), value in sorted(self.counts.items()):
            lines.append(f'strangler_shadow_events_total{{route="{escape_label(route)}",'
                         f'event="{name}"}} {value}')
        depth = self._queue.qsize() if self._queue is not None else 0
        lines += ["# HELP strangler_shadow_queue_depth Jobs waiting for a shadow worker.",
                  "# TYPE strangler_shadow_queue_depth gauge",
                  f"strangler_shadow_queue_depth {depth}"]
        return "\n".join(lines) + "\n"


def _store_key(config: ProxyConfig) -> tuple[str, int, float]:
    s = config.shadow
    return (store_location(s.store, getattr(config, "source", None)), s.retention_count,
            s.retention_days)


def _write(store: DiffStore, batch: list[DiffRecord],
           counts: Mapping[tuple[str, str], int]) -> None:
    store.add(batch)
    store.add_counts(counts)


async def _read_frame(reader: asyncio.StreamReader) -> tuple[Any, ...] | None:
    try:
        header = await reader.readexactly(FRAME_HEADER.size)
        message: tuple[Any, ...] = marshal.loads(await reader.readexactly(
            FRAME_HEADER.unpack(header)[0]))
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    return message


async def serve_worker(fd: int, config_path: str) -> None:
    """The worker process: read frames from the proxy, run a ShadowRunner, report back."""
    sock = socket.socket(fileno=fd)
    runner = ShadowRunner(load_config(config_path), prefiltered=True)
    await runner.start()
    reader, writer = await asyncio.open_unix_connection(sock=sock)
    writer.write(encode_frame(("ready",)))
    reporter = asyncio.create_task(_report_counts(runner, writer))
    drain = 2.0
    try:
        while True:
            await runner.budget.wait()  # over budget: copies wait in the proxy's buffer
            message = await _read_frame(reader)
            if message is None:
                break
            kind = message[0]
            if kind == "offer":
                runner.offer(offer_from_message(message))
            elif kind == "counts":
                runner.add_counts(message[1])
            elif kind == "reload":
                with contextlib.suppress(Exception):
                    runner.reconfigure(load_config(message[1]))
            elif kind == "idle":
                idle = await runner.wait_idle(message[2])
                await runner.flush()
                writer.write(encode_frame(("idle", message[1], idle)))
            elif kind == "stop":
                drain = float(message[1])
                break
    finally:
        reporter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reporter
        await runner.stop(drain_seconds=drain)
        writer.close()


async def _report_counts(runner: ShadowRunner, writer: asyncio.StreamWriter) -> None:
    while True:
        await asyncio.sleep(_COUNTS_SECONDS)
        writer.write(encode_frame(("counts", dict(runner.counts))))


def _lower_priority() -> None:
    """Background work: the scheduler serves client traffic first.

    SCHED_IDLE (Linux) runs the worker only when a core would otherwise idle, and a waking
    proxy preempts it at once; a high nice value alone still lets a busy worker delay the
    proxy's wake-ups by a scheduler slice (measured: p50 x2 at 1,000 req/s). The price: on a
    saturated machine the worker may not run for a while; its late copies are then dropped
    as ``dropped_worker_starved``, never blamed on the service. Setting :data:`PRIORITY_ENV`
    to ``normal`` keeps the default priority (comparisons before client latency).
    """
    if os.environ.get(PRIORITY_ENV, "idle") == "normal":
        return
    with contextlib.suppress(OSError, AttributeError):
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        return
    with contextlib.suppress(OSError):
        os.nice(WORKER_NICE)


def _worker_main(argv: list[str]) -> None:
    fd = int(argv[argv.index("--worker") + 1])
    config_path = argv[argv.index("--config") + 1]
    logging.basicConfig(level=logging.WARNING, format="shadow worker: %(message)s")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the proxy, which stops us
    _lower_priority()
    try:
        asyncio.run(serve_worker(fd, config_path))
    except ProxyError as exc:  # bad store or routes file: one line, as the CLI would say it
        print(f"strangler: shadow worker: error: {exc}", file=sys.stderr)  # noqa: T201
        raise SystemExit(2) from None


if __name__ == "__main__":
    _worker_main(sys.argv[1:])
