"""Request-only copy records: what our proxy sends the comparator for a shadowed safe request.

The cheapest copy the proxy can make is of bytes it already holds: the request head it wrote
to the monolith (``Exchange.head_bytes``: request line, the client's end-to-end headers,
``X-Forwarded-*``, ``Via``, ``X-Request-ID``) and the body it teed. The proxy appends one record
to a bytearray per copy (no dict, tuple, JSON or hash per request); a batch of records goes
to the comparator, signed, in one write (:mod:`.remote`). The comparator decodes here, off the
proxy's cores, and asks the monolith for the baseline itself, as for an engine's mirror: a
safe request's answer is asked again anyway for the noise check, and the primary's answer
never has to be copied.

A record is a frame of the batch format (``sink.FRAME_HEADER``: a 4-byte big-endian length),
told from the marshalled frames beside it by its first byte, :data:`COPY_KIND` (marshal never
starts with it)::

    !I size | B kind (1) | B flags | H name length | I head length | d time |
    route name | head | body (the rest)

flags: bit 0, the body was cut (never sent: the proxy refuses cut bodies; kept for the
format). ``time`` is the proxy's wall clock when the batch's first copy was made (so within
``remote.RECORD_SECONDS`` of this one's; one clock read per batch, not per copy).
"""

from __future__ import annotations

import ipaddress
import logging
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from strangler_proxy.exchange import COPY_EXCHANGE, COPY_REQUEST_ONLY, RecordedRequest
from strangler_proxy.headers import REQUEST_DROP, client_address, connection_tokens

log = logging.getLogger("strangler.shadow")

Networks = Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]

COPY_KIND: Final = 1
FLAG_TRUNCATED: Final = 1
# the frame's own 4-byte length first, then the fields it counts
RECORD: Final = struct.Struct("!IBBHId")
RECORD_FIXED: Final = RECORD.size - 4  # bytes of the fixed fields the length counts
_NAME_SIZE: Final = struct.Struct("!H")  # at offset 2 of a record (after kind and flags)


PACED: Final = -1  # admit's answer for a copy not made to match the comparator's pace
SAFE: Final = frozenset({"GET", "HEAD", "OPTIONS"})  # sink.SAFE_METHODS (no import: compiled)
FLUSH_BYTES: Final = 256 * 1024  # a batch goes when this much waits (or on the sink's timer)


@dataclass(frozen=True, slots=True)
class Plan:
    """A route's copy decisions, worked out at each reload so ``admit`` only looks them up."""

    percent: float
    writes: bool  # shadow.writes: unsafe methods are copied, whole (the primary's answer too)
    cap: int  # body bytes at most
    name: bytes  # the route's name as it goes in each record
    fixed: int  # a record's size without head and body (fixed fields and name)
    index: int  # its slot in CopyBuffer.sent


def plan(name: str, percent: float, writes: bool, cap: int, index: int) -> Plan:
    """The plan of a route that has a service to copy to (``index``: its counter's slot)."""
    raw = name.encode()
    return Plan(percent, writes, cap, raw, RECORD_FIXED + len(raw), index)


class CopyBuffer:
    """The proxy's two calls on the client's path, ``admit`` and ``copy``, and the records.

    Kept apart from the sink (remote.py), which owns the connection, the timer and the
    batches, so that this small class is compiled with the hot path (strangler_proxy/native.py)
    while the sink stays plain Python. The sink sets :attr:`transport` (None while there is
    no connection), :attr:`plans` at each reload and :attr:`waiting` (whole frames' bytes);
    ``arm`` is called at a batch's first record, ``flush`` when :attr:`flush_bytes` wait,
    ``count`` for each refusal.
    """

    def __init__(self, buffer_bytes: int, rng: Callable[[], float],
                 counts: dict[tuple[str, str], int], count: Callable[[str, str], None],
                 arm: Callable[[], None], flush: Callable[[], None]) -> None:
        self.buffer_bytes = buffer_bytes
        self.flush_bytes = FLUSH_BYTES
        self.rng = rng
        self.counts = counts
        self.count = count
        self.arm = arm
        self.flush = flush
        self.plans: dict[str, Plan | None] = {}
        self.sent: list[int] = []  # copies appended per plan index, folded into counts by take
        self.paced: list[int] = []  # copies not made, to keep to the comparator's pace
        # the share of admitted copies made: what the comparator has room for (remote.Pace)
        self.fraction = 1.0
        self.names: list[str] = []  # route name per plan index
        self.records = bytearray()
        self.transport: Any = None
        self.waiting = 0
        self.armed = False
        self.stamp = 0.0

    def admit(self, route: str, method: str) -> int:
        """Before the proxy copies a byte: service, method, sampling, room for the copy.

        A safe method is copied as its request alone (:data:`COPY_REQUEST_ONLY`); a write,
        on a route with ``shadow.writes = true``, cannot be asked of the monolith again, so
        it goes whole (:data:`COPY_EXCHANGE`), with the primary's answer. :data:`PACED`: not
        copied because the comparator takes fewer than it is sent (:attr:`fraction`); counted
        here as ``skipped_comparator_busy``, with no other bookkeeping on the client's path.
        """
        try:
            found = self.plans.get(route)
            if found is None:
                reason = "skipped_no_service"
            else:
                how = COPY_REQUEST_ONLY if method in SAFE or method.upper() in SAFE \
                    else COPY_EXCHANGE
                if how == COPY_EXCHANGE and not found.writes:
                    reason = "skipped_unsafe_method"
                elif found.percent < 100 and self.rng() * 100 >= found.percent:
                    reason = "skipped_sampling"
                elif self.fraction < 1.0 and self.rng() >= self.fraction:
                    self.paced[found.index] += 1
                    return PACED
                else:
                    transport = self.transport
                    if transport is None or transport.is_closing():
                        reason = "dropped_comparator_down"
                    elif transport.get_write_buffer_size() + len(self.records) + \
                            self.waiting > self.buffer_bytes:
                        reason = "dropped_queue_full"
                    else:
                        return how
        except Exception:  # noqa: BLE001 - the client's path must never see our failures
            log.exception("shadow admission failed")
            reason = "dropped_internal_error"
        self.count(route, reason)
        return 0

    def set_plans(self, plans: dict[str, Plan | None]) -> None:
        """A reload's plans (their indexes count from 0); copies counted so far are kept."""
        self.fold()
        self.plans = plans
        self.names = [name for name, found in plans.items() if found is not None]
        self.sent = [0] * len(self.names)
        self.paced = [0] * len(self.names)

    def copy(self, route: str, head: bytes, body: bytearray | None, truncated: bool) -> bool:
        """A safe request whose primary has answered: one record appended, nothing else.

        ``head`` is the request head as sent upstream, ``body`` what was teed of the body.
        :meth:`admit` checked the connection and its buffer; this checks only what came
        since: the body, and the records' own bound.
        """
        try:
            # a route gone since admit (a reload): an error, counted as an internal one
            found = self.plans[route]
            assert found is not None
            assert body is not None
            records = self.records
            if truncated or len(body) > found.cap:
                reason = "skipped_body_too_large"
            elif len(records) > self.buffer_bytes:
                reason = "dropped_queue_full"
            else:
                if not self.armed:  # a batch's first record: one clock read per batch
                    self.armed = True
                    self.stamp = time.time()
                    self.arm()
                fixed = found.fixed
                records += RECORD.pack(fixed + len(head) + len(body), COPY_KIND, 0,
                                       fixed - RECORD_FIXED, len(head), self.stamp)
                records += found.name
                records += head
                if body:
                    records += body
                self.sent[found.index] += 1
                if len(records) >= self.flush_bytes:
                    self.flush()
                return True
        except Exception:  # noqa: BLE001 - the client's path must never see our failures
            log.exception("shadow copy failed")
            reason = "dropped_internal_error"
        self.count(route, reason)
        return False

    def fold(self) -> None:
        """Add the copies counted since the last fold to ``counts``.

        ``handed_to_worker`` for those appended, ``skipped_comparator_busy`` for those paced.
        """
        counts = self.counts
        for event, tally in (("handed_to_worker", self.sent),
                             ("skipped_comparator_busy", self.paced)):
            for index, value in enumerate(tally):
                if value:
                    key = (self.names[index], event)
                    counts[key] = counts.get(key, 0) + value
                    tally[index] = 0

    def take(self) -> bytearray:
        """The records waiting, handed over for a batch (the buffer starts again empty)."""
        self.fold()
        records = self.records
        self.records = bytearray()
        self.armed = False
        return records


class BadRecord(ValueError):
    """A copy record that cannot be read (the batch it came in is refused)."""


@dataclass(frozen=True, slots=True)
class Copy:
    """A decoded copy record."""

    route: str
    request: RecordedRequest
    sent_at: float


def encode(route: bytes, head: bytes, body: bytes, sent_at: float, flags: int = 0) -> bytes:
    """One record (the proxy appends the same fields in place; this is for tests and tools)."""
    return RECORD.pack(RECORD_FIXED + len(route) + len(head) + len(body), COPY_KIND, flags,
                       len(route), len(head), sent_at) + route + head + body


def route_of(frame: bytes | bytearray | memoryview) -> str:
    """The route name of a record (``frame`` without its 4-byte length), nothing else read."""
    if len(frame) < RECORD_FIXED:
        raise BadRecord(f"a copy record of {len(frame)} bytes (at least {RECORD_FIXED})")
    (name_size,) = _NAME_SIZE.unpack_from(frame, 2)
    return bytes(frame[RECORD_FIXED:RECORD_FIXED + name_size]).decode("utf-8", "replace")


def decode(frame: bytes | memoryview, base_path: str = "",
           trusted: Networks = ()) -> Copy:
    """A record's fields (``frame`` without its 4-byte length), the request as the client sent it.

    ``base_path`` is the monolith's URL path (the proxy prefixed it to the target);
    ``trusted`` the routes file's ``proxy.trusted_proxies``, to read the client's address
    from ``X-Forwarded-For`` as the proxy did.
    """
    if len(frame) < RECORD_FIXED:
        raise BadRecord(f"a copy record of {len(frame)} bytes (at least {RECORD_FIXED})")
    kind, flags, name_size, head_size, sent_at = RECORD.unpack_from(
        b"\0\0\0\0" + bytes(frame[:RECORD_FIXED]))[1:]
    if kind != COPY_KIND:
        raise BadRecord(f"not a copy record (kind {kind})")
    end_name = RECORD_FIXED + name_size
    end_head = end_name + head_size
    if end_head > len(frame):
        raise BadRecord(f"a copy record's name and head ({name_size} + {head_size} bytes) run "
                        f"past its end ({len(frame)} bytes)")
    route = bytes(frame[RECORD_FIXED:end_name]).decode("utf-8")
    request = parse_head(bytes(frame[end_name:end_head]), bytes(frame[end_head:]),
                         bool(flags & FLAG_TRUNCATED), base_path, trusted)
    return Copy(route, request, sent_at)


def parse_head(head: bytes, body: bytes, truncated: bool, base_path: str = "",
               trusted: Networks = ()) -> RecordedRequest:
    r"""The client's request from the head the proxy sent upstream.

    The proxy's own headers go (forwarding, ``Via``, ``X-Request-ID``, framing, hop-by-hop,
    ``X-Strangler-*``); ``Host`` is the client's, which the proxy kept in ``X-Forwarded-Host``.

    >>> r = parse_head(b"GET /base/a?q=1 HTTP/1.1\r\nHost: mono:80\r\nCookie: c=1\r\n"
    ...                b"X-Forwarded-For: 10.0.0.9\r\nX-Forwarded-Host: shop\r\n"
    ...                b"Via: 1.1 strangler\r\nX-Request-ID: r-1\r\n\r\n", b"", False, "/base")
    >>> r.method, r.path, r.query, r.headers, r.request_id, r.client
    ('GET', '/a', 'q=1', (('Host', 'shop'), ('Cookie', 'c=1')), 'r-1', '10.0.0.9')
    """
    if not head.endswith(b"\r\n\r\n"):
        raise BadRecord("a copy record's head does not end with an empty line")
    lines = head[:-4].split(b"\r\n")
    # messages name the line, never its bytes: a head may carry credentials
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
        raise BadRecord("a copy record's request line is not METHOD TARGET HTTP/x.y "
                        "(both ends must run the same strangler version)")
    method, target, _ = parts
    pairs: list[tuple[bytes, bytes]] = []
    for number, line in enumerate(lines[1:], 2):
        name, colon, value = line.partition(b":")
        if not colon or not name:
            raise BadRecord(f"line {number} of a copy record's head is not NAME: VALUE")
        pairs.append((name.strip(), value.strip()))
    lowered = {name.lower(): value for name, value in pairs}
    drop = REQUEST_DROP | {b"host"} | connection_tokens(pairs)
    host = lowered.get(b"x-forwarded-host") or lowered.get(b"host") or b""
    headers = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in pairs
               if n.lower() not in drop]
    if host:
        headers.insert(0, ("Host", host.decode("latin-1")))
    raw = target.decode("latin-1")
    path, _, query = raw.partition("?")
    base = base_path.rstrip("/")
    if base and (path == base or path.startswith(base + "/")):
        path = path[len(base):] or "/"
    client = client_address("", lowered.get(b"x-forwarded-for"), True, trusted)
    return RecordedRequest(method.decode("ascii", "replace"), path, query, tuple(headers), body,
                           truncated, lowered.get(b"x-request-id", b"").decode("latin-1"),
                           client)


__all__ = ["COPY_KIND", "FLUSH_BYTES", "PACED", "RECORD", "RECORD_FIXED", "BadRecord", "Copy",
           "CopyBuffer", "Plan", "decode", "encode", "parse_head", "plan", "route_of"]
