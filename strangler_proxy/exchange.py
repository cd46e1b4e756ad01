"""Plain records of one HTTP exchange: the seam between forwarding and shadow comparison.

The forwarding path (``strangler_proxy.edge.forward``) builds these from what it saw on the wire
and hands them to a :class:`ShadowSink`; the shadow side (``strangler_proxy.shadow.sink``)
copies the request to the service, compares, and stores. Both sides depend only on this
module, never on each other's internals. Header names are kept as received (lists of
pairs, so repeated headers such as ``Set-Cookie`` stay apart); bodies are bytes, already
capped by the producer (``body_truncated`` says when the cap cut them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from strangler_proxy.config import ProxyConfig
from strangler_proxy.headers import end_to_end

Headers = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """A request as the client sent it (after hop-by-hop headers were removed)."""

    method: str
    path: str  # path only, no query string
    query: str  # raw query string without the leading "?", "" when absent
    headers: Headers
    body: bytes = b""
    body_truncated: bool = False
    request_id: str = ""
    client: str = ""  # client address as the proxy saw it


@dataclass(frozen=True, slots=True)
class RecordedResponse:
    """A response as an upstream sent it, with how long it took."""

    status: int
    headers: Headers
    body: bytes = b""
    body_truncated: bool = False
    elapsed_ms: float = 0.0
    error: str = ""  # non-empty when no response arrived: "timeout", "connect", "reset", ...
    # when body_truncated: SHA-256 (hex) and length of the whole body, hashed as it streamed
    # past the cap ("" / -1 when the whole body was not seen)
    digest: str = ""
    size: int = -1


@dataclass(frozen=True, slots=True)
class ShadowOffer:
    """What the proxy offers the shadow side for one exchange on a route in shadow mode."""

    route: str
    route_template: str  # e.g. "/api/products/{id}/" or the matched prefix
    target: str  # name of the upstream the copy should go to
    request: RecordedRequest
    primary: RecordedResponse
    extra: dict[str, str] = field(default_factory=dict)


# What ``ShadowSink.admit`` answers (any true value copies): the whole exchange, request and
# primary answer, for ``offer_raw``; or the request alone for the sink's
# ``copy(route, head, body, truncated)``: the request head as sent upstream and the body teed
# (the far end asks the monolith itself; remote.py, for safe methods).
COPY_EXCHANGE: Final = 1
COPY_REQUEST_ONLY: Final = 2


class ShadowSink(Protocol):
    """Where the proxy hands finished exchanges: every hook the proxy calls, none optional.

    The hot path calls ``admit`` before it copies any byte of an exchange (False: not copied,
    the sink counted why) and then ``offer_raw`` with the exchange as the flat tuple of
    :func:`offer_message`, the wire's bytes still undecoded; ``offer`` takes the decoded form.
    None of the three may block or raise. The app calls ``start``/``stop`` around serving,
    ``reconfigure`` after each reload and ``prometheus_text`` for ``/metrics``.
    ``shadow.sink.ProcessSink`` is the real one; :class:`NullSink` drops everything and
    :class:`OfferSink` is the base for a sink that only needs ``offer``.
    """

    def admit(self, route: str, method: str) -> int:
        """May the proxy copy this exchange? Asked before any byte is copied.

        0 (or False): no; :data:`COPY_EXCHANGE` (or True): the whole exchange, to
        ``offer_raw``; :data:`COPY_REQUEST_ONLY`: the request alone, to the sink's
        ``copy(route, head, body, truncated)`` once the primary has answered.
        """
        ...

    def offer_raw(self, message: tuple[Any, ...]) -> bool:
        """Accept the exchange in its flat, undecoded form (True) or drop it (False)."""
        ...

    def offer(self, offer: ShadowOffer) -> bool:
        """Accept the offer (True) or drop it (False, counted by the sink)."""
        ...

    def reconfigure(self, config: ProxyConfig) -> None:
        """Take the routes file the proxy just switched to."""
        ...

    async def start(self) -> None:
        """Start whatever does the work (the process sink spawns its worker)."""
        ...

    async def stop(self) -> None:
        """Drain and stop."""
        ...

    def prometheus_text(self) -> str:
        """The sink's own metrics, appended to the proxy's ``/metrics``."""
        ...


class OfferSink:
    """A sink that needs only ``offer``: admits everything, decodes each flat offer for it."""

    def admit(self, route: str, method: str) -> bool:
        """Copy every exchange."""
        return True

    def offer_raw(self, message: tuple[Any, ...]) -> bool:
        """Decode the message and hand it to :meth:`offer`."""
        return bool(self.offer(offer_from_message(message)))

    def offer(self, offer: ShadowOffer) -> bool:
        """Drop the offer; subclasses keep it."""
        return False

    def reconfigure(self, config: ProxyConfig) -> None:
        """Nothing to reconfigure."""

    async def start(self) -> None:
        """Nothing to start."""

    async def stop(self) -> None:
        """Nothing to stop."""

    def prometheus_text(self) -> str:
        """No metrics of its own."""
        return ""


class NullSink(OfferSink):
    """A shadow sink that accepts nothing (used until the shadow side provides one)."""

    def admit(self, route: str, method: str) -> bool:
        """Copy nothing."""
        return False

    def offer_raw(self, message: tuple[Any, ...]) -> bool:
        """Drop the message."""
        return False


# -- the flat form of an offer -----------------------------------------------------------------
#
# ("offer", route, template, target, method, path, query, request headers, request body,
#  request body truncated, request id, client, status, response headers, response body,
#  response body truncated, elapsed ms, error, extra, response digest, response size).
# Builtin values only (it crosses the
# process boundary with marshal). The proxy sends query, request id and header names/values as
# the bytes it read, and request headers before hop-by-hop removal; :func:`offer_from_message`
# decodes and filters them on the receiving side, off the client's path.


def offer_message(offer: ShadowOffer) -> tuple[Any, ...]:
    """An offer as a flat tuple of builtin values (the frame the worker reads)."""
    r, p = offer.request, offer.primary
    return ("offer", offer.route, offer.route_template, offer.target, r.method, r.path,
            r.query, r.headers, r.body, r.body_truncated, r.request_id, r.client, p.status,
            p.headers, p.body, p.body_truncated, p.elapsed_ms, p.error, offer.extra, p.digest,
            p.size)


def _text(value: str | bytes) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else str(value)


def _pairs(headers: Sequence[Sequence[Any]]) -> Headers:
    return tuple((_text(k), _text(v)) for k, v in headers)


def offer_from_message(m: Sequence[Any]) -> ShadowOffer:
    """The inverse of :func:`offer_message`; also reads the proxy's undecoded form."""
    request_headers = m[7]
    if request_headers and isinstance(request_headers[0][0], bytes):
        request_headers = end_to_end(request_headers)
    return ShadowOffer(m[1], m[2], m[3],
                       RecordedRequest(m[4], m[5], _text(m[6]), _pairs(request_headers), m[8],
                                       m[9], _text(m[10]), m[11]),
                       RecordedResponse(m[12], _pairs(m[13]), m[14], m[15], m[16], m[17],
                                        *(m[19:21] if len(m) > 20 else ())),
                       dict(m[18]))
