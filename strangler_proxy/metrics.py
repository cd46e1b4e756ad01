"""Counters and latency histograms in memory, rendered as Prometheus text (format 0.0.4).

Plain dictionaries keyed by label tuples: one dict increment and one bisect per request, so
the hot path pays well under a microsecond. One process, one registry; with ``--workers N``
each worker counts its own requests (see docs/proxy.md).
"""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0, 10.0)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: tuple[str, ...], values: tuple[str, ...]) -> str:
    return ",".join(f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True))


class Metrics:
    """The proxy's registry: requests, latency, upstream errors, fallbacks, reloads."""

    def __init__(self) -> None:
        self.requests: defaultdict[tuple[str, str, str], int] = defaultdict(int)
        self.latency: dict[tuple[str, str], list[float]] = {}  # bucket counts + [sum, count]
        self.upstream_errors: defaultdict[tuple[str, str], int] = defaultdict(int)
        self.fallbacks: defaultdict[tuple[str, str], int] = defaultdict(int)
        self.reloads: defaultdict[str, int] = defaultdict(int)
        self.shadow_offers: defaultdict[tuple[str, str], int] = defaultdict(int)
        self.table_version = 0

    def observe(self, route: str, target: str, status: int, seconds: float) -> None:
        """Count one finished request and its latency."""
        self.requests[(route, target, str(status))] += 1
        key = (route, target)
        hist = self.latency.get(key)
        if hist is None:
            hist = self.latency[key] = [0.0] * (len(LATENCY_BUCKETS) + 2)
        hist[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        hist[-2] += seconds
        hist[-1] += 1

    def upstream_error(self, upstream: str, kind: str) -> None:
        """Count an upstream failure (``connect``, ``timeout``, ``reset``, ``protocol``)."""
        self.upstream_errors[(upstream, kind)] += 1

    def fallback(self, route: str, why: str) -> None:
        """Count a request the monolith answered because the service failed."""
        self.fallbacks[(route, why)] += 1

    def reload(self, result: str) -> None:
        """Count a config reload (``ok``, ``error`` or ``unchanged``)."""
        self.reloads[result] += 1

    def shadow_offer(self, route: str, accepted: bool) -> None:
        """Count an exchange offered to the shadow sink."""
        self.shadow_offers[(route, "accepted" if accepted else "dropped")] += 1

    def render(self) -> str:
        """Everything in the Prometheus text exposition format."""
        out: list[str] = []
        _counter(out, "strangler_requests_total", "Requests by route, target and status.",
                 ("route", "target", "status"), self.requests)
        out += ["# HELP strangler_request_duration_seconds Time to the last response byte.",
                "# TYPE strangler_request_duration_seconds histogram"]
        for (route, target), hist in sorted(self.latency.items()):
            labels = _labels(("route", "target"), (route, target))
            running = 0.0
            for bound, n in zip(LATENCY_BUCKETS, hist, strict=False):
                running += n
                out.append(f'strangler_request_duration_seconds_bucket{{{labels},le="{bound}"}}'
                           f" {int(running)}")
            out.append(f'strangler_request_duration_seconds_bucket{{{labels},le="+Inf"}}'
                       f" {int(hist[-1])}")
            out.append(f"strangler_request_duration_seconds_sum{{{labels}}} {hist[-2]:.6f}")
            out.append(f"strangler_request_duration_seconds_count{{{labels}}} {int(hist[-1])}")
        _counter(out, "strangler_upstream_errors_total", "Upstream failures by kind.",
                 ("upstream", "kind"), self.upstream_errors)
        _counter(out, "strangler_fallbacks_total", "Requests the monolith answered instead.",
                 ("route", "reason"), self.fallbacks)
        _counter(out, "strangler_reloads_total", "Route table reloads by result.",
                 ("result",), {(k,): v for k, v in self.reloads.items()})
        _counter(out, "strangler_shadow_offers_total", "Exchanges offered to shadow.",
                 ("route", "result"), self.shadow_offers)
        out += ["# HELP strangler_route_table_version Version of the active route table.",
                "# TYPE strangler_route_table_version gauge",
                f"strangler_route_table_version {self.table_version}"]
        return "\n".join(out) + "\n"


def _counter(out: list[str], name: str, help_text: str, label_names: tuple[str, ...],
             values: Mapping[Any, int]) -> None:
    out += [f"# HELP {name} {help_text}", f"# TYPE {name} counter"]
    out += [f"{name}{{{_labels(label_names, key)}}} {n}" for key, n in sorted(values.items())]


__all__ = ["LATENCY_BUCKETS", "Metrics"]
