"""Counters and latency histograms in memory, rendered as Prometheus text (format 0.0.4).

Plain dictionaries keyed by label tuples: one dict lookup and a bucket search per request, so
the hot path pays well under a microsecond. One process, one registry; with ``--workers N``
each worker publishes :meth:`Metrics.snapshot` to a shared directory and the admin worker
renders the sum (:meth:`Metrics.absorb`), see ``strangler_proxy.workers``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any, Final

LATENCY_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0, 10.0)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: tuple[str, ...], values: tuple[str, ...]) -> str:
    return ",".join(f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True))


class Metrics:
    """The proxy's registry: requests, latency, upstream errors, fallbacks, reloads."""

    def __init__(self) -> None:
        # (route, target, status) -> [bucket counts..., +Inf count, sum of seconds]: one dict
        # lookup, a bucket search and two list stores per request; rendering folds statuses.
        self.cells: dict[tuple[str, str, int], list[float]] = {}
        self.upstream_errors: defaultdict[tuple[str, str], int] = defaultdict(int)
        self.fallbacks: defaultdict[tuple[str, str], int] = defaultdict(int)
        self.reloads: defaultdict[str, int] = defaultdict(int)
        self.shadow_offers: defaultdict[tuple[str, str], int] = defaultdict(int)
        self.client_timeouts: defaultdict[str, int] = defaultdict(int)
        self.table_version = 0

    def observe(self, route: str, target: str, status: int, seconds: float) -> None:
        """Count one finished request and its latency."""
        cell = self.cells.get((route, target, status))
        if cell is None:
            cell = self.cells[(route, target, status)] = [0.0] * (len(LATENCY_BUCKETS) + 2)
        index = 0  # bisect_left, as a loop: compiled (native.py), cheaper than the call
        for bound in LATENCY_BUCKETS:
            if seconds <= bound:
                break
            index += 1
        cell[index] += 1
        cell[-1] += seconds

    @property
    def requests(self) -> dict[tuple[str, str, str], int]:
        """Finished requests by (route, target, status)."""
        return {(r, t, str(s)): int(sum(cell[:-1])) for (r, t, s), cell in self.cells.items()}

    @property
    def latency(self) -> dict[tuple[str, str], list[float]]:
        """Per (route, target): bucket counts (last one +Inf), then sum and count."""
        out: dict[tuple[str, str], list[float]] = {}
        for (route, target, _), cell in self.cells.items():
            hist = out.get((route, target))
            if hist is None:
                hist = out[(route, target)] = [0.0] * (len(LATENCY_BUCKETS) + 3)
            for index, n in enumerate(cell[:-1]):
                hist[index] += n
            hist[-2] += cell[-1]
            hist[-1] += sum(cell[:-1])
        return out

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

    def client_timeout(self, kind: str) -> None:
        """Count a client connection closed for being slow (``header``, ``body``, ``idle``,
        ``send``)."""
        self.client_timeouts[kind] += 1

    def snapshot(self) -> dict[str, Any]:
        """Every counter as JSON-ready data (what a worker publishes for the admin worker)."""
        return {
            "cells": [[*key, cell] for key, cell in self.cells.items()],
            "upstream_errors": [[*k, n] for k, n in self.upstream_errors.items()],
            "fallbacks": [[*k, n] for k, n in self.fallbacks.items()],
            "shadow_offers": [[*k, n] for k, n in self.shadow_offers.items()],
            "reloads": dict(self.reloads),
            "client_timeouts": dict(self.client_timeouts),
        }

    def absorb(self, snapshot: Mapping[str, Any]) -> None:
        """Add another registry's :meth:`snapshot` into this one (the table version stays)."""
        for route, target, status, cell in snapshot.get("cells", []):
            mine = self.cells.get((route, target, status))
            if mine is None:
                mine = self.cells[(route, target, status)] = [0.0] * (len(LATENCY_BUCKETS) + 2)
            for index, value in enumerate(cell[:len(mine)]):
                mine[index] += value
        for name in ("upstream_errors", "fallbacks", "shadow_offers"):
            counter: defaultdict[tuple[str, str], int] = getattr(self, name)
            for first, second, n in snapshot.get(name, []):
                counter[(first, second)] += int(n)
        for result, n in snapshot.get("reloads", {}).items():
            self.reloads[result] += int(n)
        for kind, n in snapshot.get("client_timeouts", {}).items():
            self.client_timeouts[kind] += int(n)

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
        _counter(out, "strangler_client_timeouts_total", "Client connections closed as slow.",
                 ("kind",), {(k,): v for k, v in self.client_timeouts.items()})
        out += ["# HELP strangler_route_table_version Version of the active route table.",
                "# TYPE strangler_route_table_version gauge",
                f"strangler_route_table_version {self.table_version}"]
        return "\n".join(out) + "\n"


def _counter(out: list[str], name: str, help_text: str, label_names: tuple[str, ...],
             values: Mapping[Any, int]) -> None:
    out += [f"# HELP {name} {help_text}", f"# TYPE {name} counter"]
    out += [f"{name}{{{_labels(label_names, key)}}} {n}" for key, n in sorted(values.items())]


__all__ = ["LATENCY_BUCKETS", "Metrics"]
