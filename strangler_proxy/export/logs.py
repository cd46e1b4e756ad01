"""Evidence from an exported engine: its JSON access log read into per-route counts, statuses
and latencies (what rollouts and the strangulation meter read when an engine serves).

Each exported config writes one JSON object per request (docs/scale-out.md, "Evidence"):

=============  ============================  =================================================
key            nginx / HAProxy / Envoy        meaning
=============  ============================  =================================================
``time``       ISO 8601                      when the request started (nginx: local offset)
``route``      all three                     the route name (``default`` for the built-in one)
``side``       nginx, HAProxy                ``monolith`` or ``service``; Envoy: derived from
                                             ``upstream``
``upstream``   all three                     the upstream that answered (Envoy: its cluster)
``status``     all three                     the status sent to the client
``latency_s``  nginx                         seconds, millisecond resolution
``latency_ms`` HAProxy, Envoy                milliseconds
``method``     all three                     the request method
=============  ============================  =================================================

Lines that are not such objects (an engine's notices on the same stream) are skipped and
counted. Pure functions over lines; the caller opens the file.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from strangler_proxy.config import MONOLITH


@dataclass(frozen=True, slots=True)
class EngineRecord:
    """One request as the engine logged it."""

    time: str
    route: str
    side: str
    upstream: str
    status: int
    latency_ms: float
    method: str = ""


@dataclass(slots=True)
class RouteEvidence:
    """What one route did, from the engine's log."""

    route: str
    requests: int = 0
    sides: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    errors_by_side: Counter[str] = field(default_factory=Counter)  # responses >= 500

    @property
    def errors(self) -> int:
        """Responses of 500 or more."""
        return sum(self.errors_by_side.values())

    def percentile(self, fraction: float) -> float:
        """The latency (ms) below which ``fraction`` of the requests finished (nearest rank).

        >>> e = RouteEvidence("r", latencies_ms=[1.0, 2.0, 3.0, 4.0])
        >>> e.percentile(0.5), e.percentile(0.99)
        (2.0, 4.0)
        """
        if not self.latencies_ms:
            return 0.0
        ordered = sorted(self.latencies_ms)
        rank = max(1, -(-round(fraction * len(ordered) * 1000) // 1000))
        return ordered[min(len(ordered), rank) - 1]

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready summary."""
        return {"route": self.route, "requests": self.requests, "sides": dict(self.sides),
                "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
                "errors": self.errors, "errors_by_side": dict(self.errors_by_side),
                "p50_ms": self.percentile(0.5), "p95_ms": self.percentile(0.95),
                "p99_ms": self.percentile(0.99)}


def parse_engine_line(line: str) -> EngineRecord | None:
    """One access-log line as an :class:`EngineRecord`, or None when it is not one.

    >>> parse_engine_line('{"route":"a","upstream":"catalog","status":200,"latency_ms":3}')
    EngineRecord(time='', route='a', side='service', upstream='catalog', status=200, \
latency_ms=3.0, method='')
    """
    try:
        data = json.loads(line)
    except ValueError:
        return None
    if not isinstance(data, dict) or "route" not in data or "status" not in data:
        return None
    try:
        status = int(data["status"])
        if "latency_ms" in data:
            latency = float(data["latency_ms"])
        else:
            latency = float(data.get("latency_s", 0)) * 1000
    except (TypeError, ValueError):
        return None
    upstream = str(data.get("upstream", ""))
    side = str(data.get("side") or (MONOLITH if upstream in ("", MONOLITH) else "service"))
    return EngineRecord(time=str(data.get("time", "")), route=str(data["route"]), side=side,
                        upstream=upstream, status=status, latency_ms=latency,
                        method=str(data.get("method", "")))


def read_engine_log(lines: Iterable[str], since: str | None = None,
                    ) -> tuple[dict[str, RouteEvidence], int]:
    """Per-route evidence from access-log lines, and how many lines were not records.

    ``since`` (an ISO 8601 string in the log's own format) keeps records at or after it.
    """
    evidence: dict[str, RouteEvidence] = {}
    skipped = 0
    for line in lines:
        record = parse_engine_line(line)
        if record is None:
            skipped += bool(line.strip())
            continue
        if since is not None and record.time < since:
            continue
        route = evidence.setdefault(record.route, RouteEvidence(record.route))
        route.requests += 1
        route.sides[record.side] += 1
        route.statuses[record.status] += 1
        route.latencies_ms.append(record.latency_ms)
        if record.status >= 500:
            route.errors_by_side[record.side] += 1
    return evidence, skipped


__all__ = ["EngineRecord", "RouteEvidence", "parse_engine_line", "read_engine_log"]
