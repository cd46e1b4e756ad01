"""Plain records of one HTTP exchange: the seam between forwarding and shadow comparison.

The forwarding path (``strangler_proxy.server``) builds these from what it saw on the wire
and hands them to a :class:`ShadowSink`; the shadow side (``strangler_proxy.shadow``)
copies the request to the service, compares, and stores. Both sides depend only on this
module, never on each other's internals. Header names are kept as received (lists of
pairs, so repeated headers such as ``Set-Cookie`` stay apart); bodies are bytes, already
capped by the producer (``body_truncated`` says when the cap cut them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

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


@dataclass(frozen=True, slots=True)
class ShadowOffer:
    """What the proxy offers the shadow side for one exchange on a route in shadow mode."""

    route: str
    route_template: str  # e.g. "/api/products/{id}/" or the matched prefix
    target: str  # name of the upstream the copy should go to
    request: RecordedRequest
    primary: RecordedResponse
    extra: dict[str, str] = field(default_factory=dict)


class ShadowSink(Protocol):
    """Receives offers from the hot path. ``offer`` must never block or raise."""

    def offer(self, offer: ShadowOffer) -> bool:
        """Accept the offer (True) or drop it (False, counted by the sink)."""
        ...
