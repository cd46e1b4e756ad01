"""Live evidence per route and side: counts, status classes and latency over sliding windows.

The hot path pays nothing new: the edge already feeds :meth:`Metrics.observe` (one dict
lookup and one bisect per request) into cumulative cells by (route, target, status), with a
latency histogram per cell. Like Prometheus's ``rate()``, a window is the *difference* of
two samples of those cumulative counters. The control plane takes a :func:`sample` once a
second into an :class:`EvidenceRing` (the admin worker samples the counters summed over all
workers, so ``--workers N`` is merged for free); ``ring.window(route, seconds)`` is then a
subtraction, and the strangulation meter reads the same ring for its time series.

A request counts as an **error** when the proxy answered it 5xx: the upstream's own 5xx, a
timeout (``504``), a refused or reset connection (``502``). A service failure the monolith
covered for (``fallback = true``) is counted as a service request and a service error too,
although the client got the monolith's answer. Known gap: an upstream that resets the
connection after the response started is counted with the status it had sent.

>>> from strangler_proxy.metrics import Metrics
>>> m = Metrics()
>>> m.observe("catalog", "monolith", 200, 0.004)
>>> m.observe("catalog", "catalog", 503, 0.002)
>>> s = sample(m, {"catalog": "catalog"})["catalog"]
>>> (s["monolith"].requests, s["service"].requests, s["service"].errors)
(1, 1, 1)
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Mapping
from dataclasses import dataclass, field

from strangler_proxy.metrics import LATENCY_BUCKETS, Metrics

SIDES = ("monolith", "service")
RING_SECONDS = 3600  # one sample a second, an hour back: the longest window a step may use
_BINS = len(LATENCY_BUCKETS) + 1  # the last bin is +Inf


@dataclass(frozen=True, slots=True)
class SideCounts:
    """Requests of one side of one route: totals, status classes and a latency histogram."""

    requests: int = 0
    errors: int = 0  # 5xx, timeouts, resets, and service failures the monolith covered for
    classes: tuple[int, int, int, int] = (0, 0, 0, 0)  # 2xx (and 1xx), 3xx, 4xx, 5xx
    bins: tuple[int, ...] = field(default=(0,) * _BINS)  # by LATENCY_BUCKETS, then +Inf

    def __sub__(self, other: SideCounts) -> SideCounts:
        return SideCounts(self.requests - other.requests, self.errors - other.errors,
                          _minus(self.classes, other.classes),  # type: ignore[arg-type]
                          _minus(self.bins, other.bins))

    def __add__(self, other: SideCounts) -> SideCounts:
        return SideCounts(self.requests + other.requests, self.errors + other.errors,
                          _plus(self.classes, other.classes),  # type: ignore[arg-type]
                          _plus(self.bins, other.bins))

    @property
    def error_rate(self) -> float:
        """Errors over requests (0 with no requests)."""
        return self.errors / self.requests if self.requests else 0.0

    def quantile(self, q: float) -> float | None:
        """The ``q`` quantile of latency in seconds, interpolated inside its histogram bin.

        The same estimate as Prometheus's ``histogram_quantile``; None without samples. In
        the +Inf bin it answers the largest finite bound (the estimate cannot say more).

        >>> SideCounts(10, 0, (10, 0, 0, 0), (0, 0, 0, 0, 10) + (0,) * 10).quantile(0.5)
        0.0075
        """
        total = sum(self.bins)
        if total == 0:
            return None
        rank = q * total
        running = 0
        for index, n in enumerate(self.bins):
            if n and running + n >= rank:
                if index >= len(LATENCY_BUCKETS):
                    return LATENCY_BUCKETS[-1]
                low = LATENCY_BUCKETS[index - 1] if index else 0.0
                high = LATENCY_BUCKETS[index]
                return low + (high - low) * (rank - running) / n
            running += n
        return LATENCY_BUCKETS[-1]

    def as_json(self) -> dict[str, object]:
        """Plain data for the admin API and ``strangler status --json``."""
        p99 = self.quantile(0.99)
        return {"requests": self.requests, "errors": self.errors,
                "error_rate": round(self.error_rate, 6),
                "status": dict(zip(("2xx", "3xx", "4xx", "5xx"), self.classes, strict=True)),
                "p99_ms": None if p99 is None else round(p99 * 1000, 3)}


def _minus(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(x - y for x, y in zip(a, b, strict=True))


def _plus(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(x + y for x, y in zip(a, b, strict=True))


RouteSample = dict[str, SideCounts]  # side -> cumulative counts


def sample(metrics: Metrics, targets: Mapping[str, str]) -> dict[str, RouteSample]:
    """The cumulative counts of every route, split by side, from the metrics registry.

    ``targets`` maps each route to its service upstream; a cell whose target is
    ``monolith`` is the monolith side, any other target the service side.
    """
    raw: dict[tuple[str, str], list[int]] = {}
    for (route, target, status), cell in metrics.cells.items():
        side = "monolith" if target == "monolith" else "service"
        acc = raw.get((route, side))
        if acc is None:
            acc = raw[(route, side)] = [0] * (6 + _BINS)
        count = int(sum(cell[:-1]))
        acc[0] += count
        if status >= 500 or status == 0:
            acc[1] += count
        acc[2 + min(3, max(0, status // 100 - 2))] += count
        for index in range(_BINS):
            acc[6 + index] += int(cell[index])
    for (route, _why), n in metrics.fallbacks.items():
        acc = raw.get((route, "service"))
        if acc is None:
            acc = raw[(route, "service")] = [0] * (6 + _BINS)
        acc[0] += n  # the service was asked and failed; the monolith answered
        acc[1] += n
        acc[5] += n
    out: dict[str, RouteSample] = {route: {} for route in targets}
    for (route, side), acc in raw.items():
        out.setdefault(route, {})[side] = SideCounts(
            acc[0], acc[1], (acc[2], acc[3], acc[4], acc[5]), tuple(acc[6:]))
    return out


@dataclass(frozen=True, slots=True)
class Window:
    """What one route saw on each side between two samples."""

    route: str
    seconds: float
    monolith: SideCounts
    service: SideCounts

    @property
    def service_share(self) -> float:
        """Share of the route's requests the service answered (0 with no requests)."""
        total = self.monolith.requests + self.service.requests
        return self.service.requests / total if total else 0.0

    def as_json(self) -> dict[str, object]:
        """Plain data for the admin API."""
        return {"route": self.route, "seconds": round(self.seconds, 3),
                "monolith": self.monolith.as_json(), "service": self.service.as_json(),
                "service_share": round(self.service_share, 6)}


class EvidenceRing:
    """Samples of the cumulative counters, one per :meth:`add`, kept for ``RING_SECONDS``.

    The clock is the caller's: the control plane adds ``(time.time(), sample(...))``.
    """

    def __init__(self, keep_seconds: float = RING_SECONDS) -> None:
        self.keep = keep_seconds
        self.samples: list[tuple[float, dict[str, RouteSample]]] = []
        self.times: list[float] = []

    def add(self, at: float, counts: dict[str, RouteSample]) -> None:
        """Append a sample taken at ``at`` (Unix seconds); forget the ones too old to use."""
        if self.samples and counts_went_back(self.samples[-1][1], counts):
            self.samples.clear()  # counters restarted (a worker came back): old deltas lie
            self.times.clear()
        self.samples.append((at, counts))
        self.times.append(at)
        old = bisect_left(self.times, at - self.keep)
        if old > 64:  # trim in batches: list slicing, not a pop per sample
            del self.samples[:old]
            del self.times[:old]

    def at_or_before(self, when: float) -> tuple[float, dict[str, RouteSample]] | None:
        """The newest sample taken at or before ``when`` (else the oldest one kept)."""
        if not self.samples:
            return None
        index = bisect_right(self.times, when) - 1
        return self.samples[max(0, index)]

    def between(self, route: str, start: float, end: float | None = None) -> Window:
        """What ``route`` saw from ``start`` to ``end`` (default: the newest sample)."""
        empty = Window(route, 0.0, SideCounts(), SideCounts())
        if not self.samples:
            return empty
        first = self.at_or_before(start)
        last = self.at_or_before(end) if end is not None else self.samples[-1]
        if first is None or last is None:
            return empty
        a = first[1].get(route, {})
        b = last[1].get(route, {})
        zero = SideCounts()
        return Window(route, last[0] - first[0],
                      b.get("monolith", zero) - a.get("monolith", zero),
                      b.get("service", zero) - a.get("service", zero))

    def window(self, route: str, seconds: float) -> Window:
        """What ``route`` saw over the last ``seconds``."""
        if not self.samples:
            return Window(route, 0.0, SideCounts(), SideCounts())
        return self.between(route, self.samples[-1][0] - seconds)

    def routes(self) -> list[str]:
        """Every route in the newest sample."""
        return sorted(self.samples[-1][1]) if self.samples else []

    def share_series(self, step: float, routes: list[str] | None = None,
                     ) -> list[tuple[float, dict[str, float | None]]]:
        """Service share per ``step`` seconds, per route and ``"*"`` (all routes), oldest first.

        None where a route had no request in that step.
        """
        if len(self.samples) < 2:
            return []
        names = routes if routes is not None else self.routes()
        start, end = self.samples[0][0], self.samples[-1][0]
        out: list[tuple[float, dict[str, float | None]]] = []
        t = start
        while t < end:
            upto = min(t + step, end)
            shares: dict[str, float | None] = {}
            served = total = 0
            for name in names:
                w = self.between(name, t, upto)
                n = w.monolith.requests + w.service.requests
                shares[name] = w.service.requests / n if n else None
                served += w.service.requests
                total += n
            shares["*"] = served / total if total else None
            out.append((upto, shares))
            t = upto
        return out


def counts_went_back(old: Mapping[str, RouteSample], new: Mapping[str, RouteSample]) -> bool:
    """True when any cumulative request count is lower than before (counters were reset)."""
    for route, sides in old.items():
        for side, counts in sides.items():
            if new.get(route, {}).get(side, SideCounts()).requests < counts.requests:
                return True
    return False


__all__ = ["RING_SECONDS", "SIDES", "EvidenceRing", "SideCounts", "Window", "counts_went_back",
           "sample"]
