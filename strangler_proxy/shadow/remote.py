"""The proxy's sink when ``[shadow].proxy_sends_to = "comparator"``: copies leave the machine.

::

    proxy process (RemoteSink)                            strangler shadow serve (serve.py)
    admit: a table lookup, "request only" for a safe      verify the signature, decode the
      method; copy: one record appended to a bytearray    records (copies.py), ask the monolith
    every 5 ms or 256 KiB ──POST /_strangler/offers────▶  for the baseline, compare, redact,
      one keep-alive connection, one write, signed        store in the routes file's diff store

The client's path does the least it can (measured with ``bench.proxy.hotpath --sink remote``):
``admit`` looks the route up in a table made at each reload and checks the connection's
room; for a safe method the proxy then tees no response, and once the primary has answered
``copy`` appends one record: fixed fields, the route's name, the request head as sent to the
monolith and the body (:mod:`.copies`). No dict, tuple, JSON, marshal or hash per request;
the batch is signed and written once per :data:`RECORD_SECONDS` or ``copies.FLUSH_BYTES``. A
write (``shadow.writes = true``) cannot be asked of the monolith again, so it goes whole, as
the local worker's frame with the primary's answer, in the same batches. Memory is bounded
(records, frames and the socket's write buffer together; full: dropped and counted). A
comparator that is down or restarting costs nothing but the copies
(``dropped_comparator_down``): the sink reconnects with the worker's back-off and never blocks
the proxy's start or stop. Answers are read only for their status: a refusal (wrong secret,
say) is logged and counted as ``comparator_refused``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import marshal
import os
import random
import ssl
import time
from collections.abc import Callable
from typing import Any, Final
from urllib.parse import urlsplit

import httptools

from strangler_proxy.config import MONOLITH, ProxyConfig
from strangler_proxy.errors import StartupError
from strangler_proxy.shadow.copies import (
    COPY_KIND,
    CopyBuffer,
    Plan,
    plan,
    route_of,
)
from strangler_proxy.shadow.serve import (
    AUTH_HEADER,
    IDLE_PATH,
    OFFERS_PATH,
    TOOK_HEADER,
    batch_auth,
)
from strangler_proxy.shadow.sink import (
    FRAME_HEADER,
    IPC_BUFFER_BYTES,
    ProcessSink,
    encode_frame,
)

log = logging.getLogger("strangler.shadow")

_CONNECT_SECONDS: Final = 2.0
_LOG_EVERY_SECONDS: Final = 10.0
# Copy records go as one batch every RECORD_SECONDS, or as soon as FLUSH_BYTES wait. A batch
# costs a timer, a signature, a write, a wake-up of the comparator and its answer, whatever
# its size: every 50 ms makes that 20 times a second (at 5 ms, bench.shadow.remote measured the
# batches' fixed cost on the primary's core above the copies' own). Copies are not
# latency-sensitive (the comparator times its own calls); the timestamps are per batch.
RECORD_SECONDS: Final = 0.05
_TOOK: Final = TOOK_HEADER.lower().encode()
# Pacing (Pace): after a batch of which the comparator took all, the share of copies made
# grows back by this factor a second; never below MIN_FRACTION, so that it keeps probing.
GROWTH_PER_SECOND: Final = 2.0
MIN_FRACTION: Final = 0.001


class Pace:
    """How many of the copies it admits the proxy makes: as many as the comparator takes.

    A comparator has a capacity (its cores, the monolith's and the service's answers); past
    it, its queue is full and it drops what it is sent. Each batch's answer says how many of
    its copies were taken (``serve.TOOK_HEADER``); when some were not, the share of copies
    made (``CopyBuffer.fraction``) is scaled by the share taken, and while every copy is
    taken it grows back (×:data:`GROWTH_PER_SECOND` a second, up to 1). So at more traffic
    than the comparator can compare, the proxy does not copy, batch and send what would be
    dropped (counted ``skipped_comparator_busy``, per route): its cost per request falls
    with the share made, and the comparator still gets all it can take.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.fraction = 1.0
        self.at = clock()

    def took(self, taken: int, sent: int) -> float:
        """The new fraction after a batch's answer: ``taken`` of its ``sent`` copies."""
        now = self.clock()
        if sent > 0 and taken < sent:
            self.fraction = max(MIN_FRACTION, self.fraction * max(taken, 0) / sent)
        elif sent > 0 and self.fraction < 1.0:
            self.fraction = min(1.0, self.fraction * GROWTH_PER_SECOND ** min(now - self.at, 1.0))
        self.at = now
        return self.fraction


def _plans(config: ProxyConfig) -> dict[str, Plan | None]:
    """Each route's plan; None for a route with no service to copy to (``skipped_no_service``)."""
    plans: dict[str, Plan | None] = {}
    index = 0  # the slot of the route's copy counter
    for route in config.routes:
        if route.target == MONOLITH or route.target not in config.upstreams:
            plans[route.name] = None
            continue
        cap = route.shadow.max_body_bytes
        plans[route.name] = plan(route.name, route.shadow.percent, route.shadow.writes,
                                 config.shadow.max_body_bytes if cap is None else int(cap),
                                 index)
        index += 1
    return plans


class _RemoteLink(asyncio.Protocol):
    """The proxy's end of the connection: the comparator's answers, in the order asked.

    Each POST leaves a waiter: ``None`` for a batch (only a refusal matters), a future for
    ``wait_idle``, which asks on this same connection so that its answer comes only after
    every batch sent before it was taken.
    """

    def __init__(self, sink: RemoteSink) -> None:
        self.sink = sink
        self.parser = httptools.HttpResponseParser(self)
        self.waiters: collections.deque[asyncio.Future[bytes] | None] = collections.deque()
        self.body = bytearray()
        self.took = b""

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.sink.refused(0)

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == _TOOK:
            self.took = value

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        status = self.parser.get_status_code()
        waiter = self.waiters.popleft() if self.waiters else None
        body, self.body = bytes(self.body), bytearray()
        if self.took:
            taken, _, sent = self.took.partition(b" ")
            self.took = b""
            with contextlib.suppress(ValueError):
                self.sink.took(int(taken), int(sent))
        if status >= 300:
            self.sink.refused(status)
        if waiter is not None and not waiter.done():
            waiter.set_result(body if status == 200 else b"{}")

    def connection_lost(self, exc: Exception | None) -> None:
        for waiter in self.waiters:
            if waiter is not None and not waiter.done():
                waiter.set_result(b"{}")
        self.waiters.clear()
        self.sink.worker_gone(self)  # type: ignore[arg-type]


class RemoteSink(ProcessSink):
    """A :class:`ProcessSink` whose far end is the standalone comparator, not a local worker."""

    copy: Callable[[str, bytes, bytearray | None, bool], bool]

    def __init__(self, config: ProxyConfig, rng: Callable[[], float] = random.random,
                 buffer_bytes: int = IPC_BUFFER_BYTES) -> None:
        # the records and the hot path's two calls; compiled with the hot path (copies.py)
        self._copies = CopyBuffer(buffer_bytes, rng, {}, self._count, self._arm,
                                  self._flush_now)
        super().__init__(config, rng, buffer_bytes)
        self._copies.counts = self.counts
        self.pace = Pace()
        # the proxy binds these once (ProxyState): straight to the buffer, no Python between
        self.admit = self._copies.admit  # type: ignore[method-assign]
        self.copy = self._copies.copy

    # the sink's connection and waiting frames, kept where the buffer's checks read them
    @property
    def _transport(self) -> Any:
        return self._copies.transport

    @_transport.setter
    def _transport(self, value: Any) -> None:
        self._copies.transport = value

    @property
    def _batch_bytes(self) -> int:
        return self._copies.waiting

    @_batch_bytes.setter
    def _batch_bytes(self, value: int) -> None:
        self._copies.waiting = value

    @property
    def _records(self) -> bytearray:
        return self._copies.records

    def reconfigure(self, config: ProxyConfig, notify: bool = True) -> None:
        """New routes file: new checks and secret here (the comparator reads its own copy)."""
        previous = getattr(self, "config", None)
        if previous is not None and (previous.shadow.comparator_url, previous.shadow
                                     .proxy_sends_to) != (config.shadow.comparator_url,
                                                          config.shadow.proxy_sends_to):
            log.warning("shadow.comparator_url / proxy_sends_to changed: takes effect at the "
                        "proxy's next start")
            config = _keep_destination(config, previous)
        super().reconfigure(config, notify=False)
        self._copies.set_plans(_plans(config))
        self._secret = config.shadow.resolve_marker_secret(os.environ)
        url = urlsplit(config.shadow.comparator_url or "")
        self._origin = (url.scheme, url.hostname or "", url.port or
                        (443 if url.scheme == "https" else 80))
        self._last_refusal = 0.0

    @property
    def comparator(self) -> str:
        """``scheme://host:port`` copies go to."""
        scheme, host, port = self._origin
        return f"{scheme}://{host}:{port}"

    def _arm(self) -> None:
        """A batch's first record: send the batch in :data:`RECORD_SECONDS`."""
        if self._flush_at is None and self._loop is not None:
            self._flush_at = self._loop.call_later(RECORD_SECONDS, self._flush)

    def _flush_now(self) -> None:
        if self._flush_at is not None:
            self._flush_at.cancel()
        self._flush()

    def _no_room(self) -> str:
        transport = self._transport
        if transport is None or transport.is_closing():
            return "dropped_comparator_down"
        waiting = self._batch_bytes + len(self._copies.records)
        if transport.get_write_buffer_size() + waiting > self._buffer_bytes:
            return "dropped_queue_full"
        return ""

    def _flush(self) -> None:
        """Send what waits as one signed batch: whole offers' frames, then copy records.

        A batch that cannot be sent (the comparator went away since its copies were
        admitted) is counted, per route, as ``dropped_comparator_down``.
        """
        self._flush_at = None
        batch, self._batch, self._batch_bytes = self._batch, [], 0
        records = self._copies.take()
        if records:
            if batch:
                batch.append(bytes(records))
        sent = True
        if batch:
            sent = self._post(OFFERS_PATH, b"".join(batch))
        elif records:
            sent = self._post(OFFERS_PATH, records)
        if not sent:
            for route in _routes_of(b"".join(batch) if batch else records or b""):
                self._count(route, "dropped_comparator_down")

    def _post(self, path: str, body: bytes | bytearray,
              waiter: asyncio.Future[bytes] | None = None) -> bool:
        transport, link = self._transport, self._link
        if transport is None or transport.is_closing() or not self._secret or \
                not isinstance(link, _RemoteLink):
            return False
        _, host, port = self._origin
        head = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Length: {len(body)}\r\n"
                f"{AUTH_HEADER}: {batch_auth(self._secret, path, body)}\r\n\r\n")
        link.waiters.append(waiter)
        transport.write(head.encode("latin-1") + body)
        return True

    def _send(self, message: tuple[Any, ...]) -> bool:
        # counters go as a batch of one frame; reload/stop/idle mean nothing to a comparator
        # (it watches its own routes file, and wait_idle asks it over HTTP)
        if message[0] != "counts":
            return self._transport is not None and not self._transport.is_closing()
        if self._flush_at is not None:  # offers first
            self._flush_at.cancel()
            self._flush()
        return self._post(OFFERS_PATH, encode_frame(message))

    def prometheus_text(self) -> str:
        """The sink's counters (copies appended so far included) in Prometheus text format."""
        self._copies.fold()
        return super().prometheus_text() + (
            "# HELP strangler_shadow_comparator_pace Share of admitted copies made: what the "
            "comparator takes (1: all).\n# TYPE strangler_shadow_comparator_pace gauge\n"
            f"strangler_shadow_comparator_pace {self._copies.fraction:.4g}\n")

    def took(self, taken: int, sent: int) -> None:
        """A batch's answer: the comparator took ``taken`` of its ``sent`` copies (see Pace)."""
        self._copies.fraction = self.pace.took(taken, sent)

    def refused(self, status: int) -> None:
        """The comparator refused a batch (or garbled its answer): count it, log now and then."""
        self.counts[("-", "comparator_refused")] += 1
        now = time.monotonic()
        if now - self._last_refusal >= _LOG_EVERY_SECONDS:
            self._last_refusal = now
            fix = "check that it and this proxy have the same shadow.marker_secret" \
                if status == 401 else "it could not read them: run the same strangler " \
                "version on both ends (copy records need this proxy's comparator)"
            log.error("the comparator at %s refused shadow copies (HTTP %s); %s",
                      self.comparator, status or "garbled answer", fix)

    async def start(self) -> None:
        """Connect to the comparator; if it is not up yet, keep trying in the background."""
        if not self._secret:
            raise StartupError("shadow.proxy_sends_to = \"comparator\" signs the copies with "
                               "shadow.marker_secret (or marker_secret_env), and none is set; "
                               "set it, the same as the comparator's")
        self._started = True
        self._task = asyncio.create_task(self._send_counts())
        if not await self._spawn():
            log.warning("the comparator at %s is not reachable; shadow copies are dropped "
                        "until it is", self.comparator)
            self.worker_gone()

    async def _spawn(self) -> bool:
        """Open the keep-alive connection to the comparator; False when it cannot be reached."""
        scheme, host, port = self._origin
        loop = asyncio.get_running_loop()
        context = ssl.create_default_context() if scheme == "https" else None
        link = _RemoteLink(self)
        try:
            async with asyncio.timeout(_CONNECT_SECONDS):
                transport, _ = await loop.create_connection(lambda: link, host, port,
                                                            ssl=context)
        except (OSError, TimeoutError):
            return False
        transport.set_write_buffer_limits(high=self._buffer_bytes)
        self.pace = Pace()  # a comparator (re)started: it may have more room
        self._copies.fraction = 1.0
        self._link = link  # type: ignore[assignment]
        self._transport = transport  # type: ignore[assignment]
        self._loop = loop
        return True

    async def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until the comparator has compared and stored everything sent so far.

        Asked on the batches' own connection, after them, so the answer covers them all.
        """
        if self._unsent:  # this side's counters too, so that they are stored
            self._send(("counts", dict(self._unsent)))
            self._unsent.clear()
        elif self._flush_at is not None:
            self._flush_at.cancel()
            self._flush()
        waiter: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        body = json.dumps({"timeout": timeout}).encode()
        if not self._post(IDLE_PATH, body, waiter):
            return False
        try:
            async with asyncio.timeout(timeout + 2.0):
                answer = await waiter
            return bool(json.loads(answer).get("idle"))
        except (ValueError, AttributeError, TimeoutError):
            return False

    async def _reap(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    async def stop(self, drain_seconds: float = 2.0) -> None:
        """Send what is batched and the last counters, then close the connection."""
        self._stopping = True
        for task in (self._restarter, self._task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._flush_at is not None:
            self._flush_at.cancel()
        self._flush()
        if self._unsent:
            self._send(("counts", dict(self._unsent)))
            self._unsent.clear()
        deadline = time.monotonic() + drain_seconds
        while self._transport is not None and self._transport.get_write_buffer_size() and \
                time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        await self._reap()


def _routes_of(batch: bytes | bytearray) -> list[str]:
    """The route of each frame in a batch (records and offers; counters are not copies)."""
    routes, at = [], 0
    while at + FRAME_HEADER.size <= len(batch):
        (size,) = FRAME_HEADER.unpack_from(batch, at)
        start, at = at + FRAME_HEADER.size, at + FRAME_HEADER.size + size
        if size and batch[start] == COPY_KIND:
            routes.append(route_of(memoryview(batch)[start:at]))
        elif size:
            message = marshal.loads(batch[start:at])
            if message and message[0] == "offer":
                routes.append(str(message[1]))
    return routes


def _keep_destination(config: ProxyConfig, previous: ProxyConfig) -> ProxyConfig:
    from dataclasses import replace

    shadow = replace(config.shadow, comparator_url=previous.shadow.comparator_url,
                     proxy_sends_to=previous.shadow.proxy_sends_to)
    return replace(config, shadow=shadow)


__all__ = ["Pace", "RemoteSink"]
