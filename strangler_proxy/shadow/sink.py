"""The proxy's shadow sink: cheap checks on the client's path, the real work in a worker.

::

    proxy process (this module)           shadow worker process (shadow_worker.py, SCHED_IDLE)
    ProcessSink.offer(offer)  ──frame──▶  ShadowRunner.offer ─▶ bounded queue ─▶ workers
      cheap checks, one write to a        copy to the service (own pool, timeout), maybe
      bounded socket buffer, or drop      ask the monolith again, compare, redact, store

``offer`` never blocks and never raises: it checks the route's sampling percent, method and
body size (:func:`refusal`), then writes one frame, or drops the offer and counts why. The
worker (:mod:`strangler_proxy.shadow.worker`) copies, compares, redacts and stores.

Safety: only GET, HEAD and OPTIONS are copied unless the route sets ``shadow.writes = true``;
every copy carries ``X-Strangler-Shadow: 1``; repeats to the monolith are only ever sent for
safe methods.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import marshal
import random
import socket
import struct
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any, Final

from strangler_proxy.config import MONOLITH, ProxyConfig, Route
from strangler_proxy.errors import StartupError
from strangler_proxy.exchange import ShadowOffer, offer_message

log = logging.getLogger("strangler.shadow")
WORKER_ENTRY = ("import sys; from strangler_proxy.shadow.worker import _worker_main; "
                "_worker_main(sys.argv[1:])")

SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})


def refusal(config: ProxyConfig, route: Route | None, offer: ShadowOffer,
            rng: Callable[[], float]) -> str:
    """Why an offer is not copied ("" when it is): no service, method, body size, sampling."""
    early = early_refusal(config, route, offer.request.method, rng)
    if early or route is None:  # no route: early said "skipped_no_service"
        return early
    return late_refusal(config, route, offer.primary.error, offer.request.body_truncated,
                        len(offer.request.body))


def early_refusal(config: ProxyConfig, route: Route | None, method: str,
                  rng: Callable[[], float]) -> str:
    """What is known before any byte is copied: no service, an unsafe method, sampling."""
    if route is None or route.target == MONOLITH or route.target not in config.upstreams:
        return "skipped_no_service"
    if method.upper() not in SAFE_METHODS and not route.shadow.writes:
        return "skipped_unsafe_method"
    if route.shadow.percent < 100 and rng() * 100 >= route.shadow.percent:
        return "skipped_sampling"
    return ""


def late_refusal(config: ProxyConfig, route: Route, error: str, truncated: bool,
                 size: int) -> str:
    """What is known once the exchange is over: the primary failed, the body was too big."""
    if error:
        return "skipped_primary_error"
    cap = route.shadow.max_body_bytes
    cap = config.shadow.max_body_bytes if cap is None else cap
    if truncated or size > cap:
        return "skipped_body_too_large"
    return ""


# -- the process boundary -----------------------------------------------------------------------
#
# Copying, comparing and storing cost CPU; done on the proxy's event loop they slow every
# client request (measured: bench/shadow). So the proxy gets a ProcessSink: ``offer`` does the
# cheap checks, serializes the offer and writes one frame to a Unix socket whose write buffer is
# bounded (full buffer: dropped and counted); a worker process (``python -m
# strangler_proxy.shadow.worker --worker FD --config FILE``) runs a ShadowRunner at the other
# end.
# Frames are (4-byte length, marshal of a tuple): ("offer", fields...), ("counts", dict),
# ("reload", path), ("idle", n, timeout), ("stop", drain); the worker answers ("ready",) once,
# ("counts", dict) every second and ("idle", n, caught_up) when it has caught up or given up.

FRAME_HEADER: Final = struct.Struct("!I")
BATCH_SECONDS: Final = 0.002
IPC_BUFFER_BYTES: Final = 16 * 1024 * 1024
_COUNTS_SECONDS: Final = 1.0
_START_SECONDS: Final = 20.0
RESTART_DELAYS: Final = (1.0, 2.0, 5.0, 10.0, 30.0)  # then every 30 s while it keeps failing


def encode_frame(message: tuple[Any, ...]) -> bytes:
    """One frame: 4-byte big-endian length, then the marshalled tuple."""
    # marshal: plain builtin values only, the same interpreter on both ends, and 6x cheaper
    # than pickling the dataclasses (measured; this runs once per shadowed request)
    data = marshal.dumps(message)
    return FRAME_HEADER.pack(len(data)) + data


class _Link(asyncio.Protocol):
    """The proxy's end of the socket: frames from the worker go to the sink."""

    def __init__(self, sink: ProcessSink) -> None:
        self.sink = sink
        self.buffer = bytearray()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while len(self.buffer) >= FRAME_HEADER.size:
            size = FRAME_HEADER.unpack_from(self.buffer)[0]
            if len(self.buffer) < FRAME_HEADER.size + size:
                return
            message = marshal.loads(bytes(self.buffer[FRAME_HEADER.size:FRAME_HEADER.size + size]))
            del self.buffer[:FRAME_HEADER.size + size]
            self.sink.from_worker(message)

    def connection_lost(self, exc: Exception | None) -> None:
        self.sink.worker_gone(self)


class ProcessSink:
    """The proxy-side sink: cheap checks, then one non-blocking write to the worker process."""

    def __init__(self, config: ProxyConfig, rng: Callable[[], float] = random.random,
                 buffer_bytes: int = IPC_BUFFER_BYTES) -> None:
        self._rng = rng
        self._buffer_bytes = buffer_bytes
        self.counts: defaultdict[tuple[str, str], int] = defaultdict(int)
        self._unsent: defaultdict[tuple[str, str], int] = defaultdict(int)
        self.worker_counts: dict[tuple[str, str], int] = {}
        self._transport: asyncio.Transport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._batch: list[bytes] = []  # offer frames waiting for the next flush
        self._batch_bytes = 0
        self._flush_at: asyncio.TimerHandle | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._task: asyncio.Task[None] | None = None
        self._idle: dict[int, asyncio.Future[Any]] = {}
        self._ready: asyncio.Future[bool] | None = None
        self._link: _Link | None = None
        self._started = False
        self._stopping = False
        self._restarter: asyncio.Task[None] | None = None
        self.restarts = 0
        self.reconfigure(config, notify=False)

    def reconfigure(self, config: ProxyConfig, notify: bool = True) -> None:
        """New routes file: new checks here, and the worker re-reads the file."""
        self.config = config
        self._routes = {r.name: r for r in config.routes}
        if notify:
            self._send(("reload", config.source))

    def admit(self, route: str, method: str) -> int:
        """Before the proxy copies a byte: sampling, method, service, a worker with room."""
        try:
            reason = early_refusal(self.config, self._routes.get(route), method, self._rng) \
                or self._no_room()
        except Exception:  # noqa: BLE001 - the client's path must never see our failures
            log.exception("shadow admission failed")
            reason = "dropped_internal_error"
        if reason:
            self._count(route, reason)
            return False
        return True

    def _no_room(self) -> str:
        transport = self._transport
        if transport is None or transport.is_closing():
            return "dropped_worker_down"
        if transport.get_write_buffer_size() + self._batch_bytes > self._buffer_bytes:
            return "dropped_queue_full"
        return ""

    def _write_offer(self, frame: bytes) -> None:
        """Queue a frame for the next flush: one write (and one worker wake-up) per batch.

        Writing each offer as it comes costs a syscall on the client's path and wakes the
        worker once per request; batching for ``BATCH_SECONDS`` turns thousands of both per
        second into a few hundred. Copies are not latency-sensitive: the worker times its
        own calls.
        """
        loop = self._loop
        if loop is None:  # not started on a loop (tests): write at once
            assert self._transport is not None
            self._transport.write(frame)
            return
        self._batch.append(frame)
        self._batch_bytes += len(frame)
        if self._flush_at is None:
            self._flush_at = loop.call_later(BATCH_SECONDS, self._flush)

    def _flush(self) -> None:
        self._flush_at = None
        batch, self._batch, self._batch_bytes = self._batch, [], 0
        transport = self._transport
        if batch and transport is not None and not transport.is_closing():
            transport.write(b"".join(batch))

    def offer_raw(self, message: tuple[Any, ...]) -> bool:
        """An admitted exchange in the flat form: last checks, then one frame to the worker.

        Nothing is decoded or filtered here; the worker does that (off the client's path).
        """
        route = message[1]
        try:
            # a route gone since admit (a reload) raises KeyError: counted as internal error
            reason = late_refusal(self.config, self._routes[route], message[17],
                                  message[9], len(message[8])) or self._no_room()
            if not reason:
                self._write_offer(encode_frame(message))
                self.counts[(route, "handed_to_worker")] += 1
                return True
        except Exception:  # noqa: BLE001 - the client's path must never see our failures
            log.exception("shadow offer failed")
            reason = "dropped_internal_error"
        self._count(route, reason)
        return False

    def offer(self, offer: ShadowOffer) -> bool:
        """An offer as a record (replay, tests): :meth:`admit`'s checks, then :meth:`offer_raw`."""
        try:
            reason = early_refusal(self.config, self._routes.get(offer.route),
                                   offer.request.method, self._rng)
        except Exception:  # noqa: BLE001 - the client's path must never see our failures
            log.exception("shadow offer failed")
            reason = "dropped_internal_error"
        if reason:
            self._count(offer.route, reason)
            return False
        return self.offer_raw(offer_message(offer))

    @property
    def worker_alive(self) -> bool:
        """Whether a worker is connected (offers are dropped while it is not)."""
        return self._transport is not None and not self._transport.is_closing()

    def _count(self, route: str, name: str) -> None:
        self.counts[(route, name)] += 1
        self._unsent[(route, name)] += 1

    def _send(self, message: tuple[Any, ...]) -> bool:
        transport = self._transport
        if transport is None or transport.is_closing():
            return False
        if self._flush_at is not None:  # offers first: "idle" must come after them
            self._flush_at.cancel()
            self._flush()
        transport.write(encode_frame(message))
        return True

    async def start(self) -> None:
        """Spawn the worker process and connect to it (StartupError when it cannot start)."""
        if not await self._spawn():
            await self.stop(drain_seconds=0.0)
            raise StartupError("the shadow worker did not start (its error is printed above; "
                               "check [shadow].store and the routes file)")
        self._started = True
        self._task = asyncio.create_task(self._send_counts())

    async def _spawn(self) -> bool:
        """Start a worker process and wait for its "ready"; False when it did not come up."""
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            # -c rather than -m: the package imports the worker module, and runpy warns on
            # every start when a module it runs as __main__ is already imported
            self._process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                [sys.executable, "-c", WORKER_ENTRY, "--worker",
                 str(child.fileno()), "--config", str(self.config.source)],
                pass_fds=(child.fileno(),))
        finally:
            child.close()
        loop = asyncio.get_running_loop()
        parent.setblocking(False)
        self._ready = loop.create_future()
        link = _Link(self)
        self._link = link
        transport, _ = await loop.create_unix_connection(lambda: link, sock=parent)
        try:
            ready = bool(await asyncio.wait_for(self._ready, _START_SECONDS))
        except TimeoutError:
            ready = False
        if ready and not transport.is_closing():  # offers go to a worker only once it is ready
            self._transport = transport
            self._loop = loop
            return True
        transport.close()
        return False

    async def _send_counts(self) -> None:
        while True:
            await asyncio.sleep(_COUNTS_SECONDS)
            if self._unsent and self._send(("counts", dict(self._unsent))):
                self._unsent.clear()

    def from_worker(self, message: tuple[Any, ...]) -> None:
        """A frame from the worker: its counters, or an answer to wait_idle."""
        if message[0] == "counts":
            self.worker_counts = dict(message[1])
        elif message[0] == "ready" and self._ready is not None and not self._ready.done():
            self._ready.set_result(True)
        elif message[0] == "idle":
            future = self._idle.pop(message[1], None)
            if future is not None and not future.done():
                future.set_result(message[2])

    def worker_gone(self, link: _Link | None = None) -> None:
        """The worker closed its end (it exited or crashed): drop offers, restart it later.

        Offers are dropped (``dropped_worker_down``) until a new worker is ready; restarts
        back off (:data:`RESTART_DELAYS`), so a worker that dies at once costs little.
        """
        if link is not None and link is not self._link:
            return  # an old worker's socket closing after a restart
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()
        for future in [*self._idle.values(), self._ready]:
            if future is not None and not future.done():
                future.set_result(False)
        if self._started and not self._stopping and self._restarter is None:
            log.warning("shadow worker is gone; shadow copies are dropped until it restarts")
            self._restarter = asyncio.get_running_loop().create_task(self._restart())

    async def _restart(self) -> None:
        attempt = 0
        try:
            while not self._stopping:
                await asyncio.sleep(RESTART_DELAYS[min(attempt, len(RESTART_DELAYS) - 1)])
                attempt += 1
                await self._reap()
                if self._stopping:
                    return
                if await self._spawn():
                    self.restarts += 1
                    log.warning("shadow worker restarted (restart %d)", self.restarts)
                    return
                log.warning("shadow worker did not restart; trying again")
        finally:
            self._restarter = None

    async def _reap(self) -> None:
        """Close the old worker's socket and make sure its process is gone."""
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        process, self._process = self._process, None
        if process is not None:
            await asyncio.to_thread(_wait_or_kill, process, 1.0)

    async def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until the worker has compared and stored everything sent so far.

        False when the worker did not catch up within ``timeout`` (or is gone).
        """
        token = len(self._idle) + int(time.monotonic_ns() % 1_000_000_000)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._idle[token] = future
        idle = False
        if self._send(("idle", token, timeout)):
            with contextlib.suppress(TimeoutError):
                idle = bool(await asyncio.wait_for(future, timeout + 1.0))
        self._idle.pop(token, None)
        return idle

    async def stop(self, drain_seconds: float = 2.0) -> None:
        """Send the last counters, ask the worker to finish, wait for it (killed if stuck)."""
        self._stopping = True
        if self._restarter is not None:
            self._restarter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._restarter
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._unsent:
            self._send(("counts", dict(self._unsent)))
            self._unsent.clear()
        self._send(("stop", drain_seconds))
        process, self._process = self._process, None
        if process is not None:
            await asyncio.to_thread(_wait_or_kill, process, drain_seconds + 5.0)
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    def prometheus_text(self) -> str:
        """Proxy-side counters and the worker's last report, Prometheus text format."""
        # the worker stores (and reports back) what this side counted, a second later
        merged = dict(self.worker_counts)
        for key, value in self.counts.items():
            merged[key] = max(merged.get(key, 0), value)
        lines = ["# HELP strangler_shadow_events_total Shadow sink events by route and event.",
                 "# TYPE strangler_shadow_events_total counter"]
        lines += [f'strangler_shadow_events_total{{route="{escape_label(route)}",event="{name}"}} '
                  f"{value}" for (route, name), value in sorted(merged.items())]
        pending = self._transport.get_write_buffer_size() if self._transport else 0
        lines += ["# HELP strangler_shadow_ipc_bytes Bytes waiting for the shadow worker.",
                  "# TYPE strangler_shadow_ipc_bytes gauge",
                  f"strangler_shadow_ipc_bytes {pending}",
                  "# HELP strangler_shadow_worker_restarts_total Shadow workers restarted.",
                  "# TYPE strangler_shadow_worker_restarts_total counter",
                  f"strangler_shadow_worker_restarts_total {self.restarts}"]
        return "\n".join(lines) + "\n"


def _wait_or_kill(process: subprocess.Popen[bytes], timeout: float) -> None:
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


def escape_label(value: str) -> str:
    r"""A Prometheus label value, escaped.

    >>> escape_label('say "hi"')
    'say \\"hi\\"'
    """
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def build_sink(config: ProxyConfig) -> ProcessSink:
    """The proxy's shadow sink (``app.py`` calls this): a worker process does the work."""
    return ProcessSink(config)
