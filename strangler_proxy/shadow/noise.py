"""Learned noise: which differences the monolith also shows when asked twice.

A sampled request goes to the monolith a second time; the differences between its two
answers are *self* differences. Per endpoint (route template) and field path (with list
indices generalized, plus the difference kind, so a type change has its own counts), we
count how often the service differs from the monolith and how often the monolith differs
from itself. A path is *noise* only when the monolith is seen to vary there and the service
does not differ significantly more often, by a one-sided Fisher exact test (exact for small
samples, so five observations do not count as proof). Everything else is reported:
a path the monolith never varies on is a real difference however few samples there are.

Pure: the model is built from observations; the store and the report feed it.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

SELF: Final = "self"
SERVICE: Final = "service"
REAL: Final = "real"
NOISE: Final = "noise"
UNLEARNED: Final = "unlearned"  # no monolith-vs-monolith samples for this endpoint yet
DEFAULT_ALPHA: Final = 0.01

_NUMERIC = re.compile(r"^\d+$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?"
                   r"[0-9a-fA-F]{12}$")
_HEX = re.compile(r"^[0-9a-fA-F]{16,}$")


def derive_template(path: str) -> str:
    """A route template from a raw path: numeric, UUID and long hex segments become ``{id}``.

    >>> derive_template("/api/products/42/reviews/9f1c4a1e-1b2c-4d5e-8f90-0123456789ab/")
    '/api/products/{id}/reviews/{id}/'
    >>> derive_template("/api/products/")
    '/api/products/'
    """
    parts = path.split("/")
    return "/".join("{id}" if _is_id(p) else p for p in parts)


def _is_id(segment: str) -> bool:
    return bool(segment) and bool(
        _NUMERIC.match(segment) or _UUID.match(segment) or _HEX.match(segment))


def template_for(route_template: str, path: str) -> str:
    """The route's own template when it has variables, else one derived from the path.

    >>> template_for("/api/products/", "/api/products/7/")
    '/api/products/{id}/'
    >>> template_for("/api/orders/{pk}/", "/api/orders/7/")
    '/api/orders/{pk}/'
    """
    if "{" in route_template:
        return route_template
    return derive_template(path)


def fisher_greater(a: int, n1: int, c: int, n2: int) -> float:
    """One-sided Fisher exact p-value that group 1's rate (a/n1) exceeds group 2's (c/n2).

    P(X >= a) for X hypergeometric: N = n1 + n2 items, K = a + c successes, n1 drawn.

    >>> f"{fisher_greater(10, 10, 0, 10):.3g}"  # 1 / C(20, 10)
    '5.41e-06'
    >>> round(fisher_greater(1, 10, 1, 10), 6)
    0.763158
    >>> fisher_greater(0, 5, 0, 5)
    1.0
    """
    if not (0 <= a <= n1 and 0 <= c <= n2):
        raise ValueError(f"counts out of range: {a}/{n1}, {c}/{n2}")
    total, successes = n1 + n2, a + c
    high = min(successes, n1)
    if a <= max(0, successes - n2):
        return 1.0
    log_denominator = _log_comb(total, n1)
    p = 0.0
    for x in range(a, high + 1):
        p += math.exp(_log_comb(successes, x) + _log_comb(total - successes, n1 - x)
                      - log_denominator)
    return min(1.0, p)


def _log_comb(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


@dataclass(frozen=True, slots=True)
class Evidence:
    """Counts behind the call on one (endpoint, path, kind) and the call itself."""

    template: str
    path: str
    kind: str
    service_diffs: int
    service_trials: int
    self_diffs: int
    self_trials: int
    p_value: float
    verdict: str  # "real" | "noise" | "unlearned"

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form for the report."""
        return {"service_diffs": self.service_diffs, "service_trials": self.service_trials,
                "self_diffs": self.self_diffs, "self_trials": self.self_trials,
                "p_value": round(self.p_value, 6), "verdict": self.verdict}


class NoiseModel:
    """Counts of differences per endpoint and path, from the service and from the monolith.

    >>> m = NoiseModel()
    >>> for i in range(30):
    ...     m.observe("/p/{id}/", SELF, [("$.served_at", "value")])
    ...     m.observe("/p/{id}/", SERVICE, [("$.served_at", "value")] +
    ...               ([("$.price", "value")] if i % 2 else []))
    >>> m.verdict("/p/{id}/", "$.served_at", "value"), m.verdict("/p/{id}/", "$.price", "value")
    ('noise', 'real')
    """

    def __init__(self, alpha: float = DEFAULT_ALPHA) -> None:
        self.alpha = alpha
        self.trials: dict[tuple[str, str], int] = defaultdict(int)
        self.diffs: dict[tuple[str, str, str, str], int] = defaultdict(int)

    def observe(self, template: str, source: str, differences: Iterable[tuple[str, str]]) -> None:
        """Count one comparison (``source`` is SELF or SERVICE) and its (path, kind) pairs."""
        self.trials[(template, source)] += 1
        for path, kind in set(differences):
            self.diffs[(template, source, path, kind)] += 1

    def evidence(self, template: str, path: str, kind: str) -> Evidence:
        """The counts, the p-value and the verdict for one path of one endpoint."""
        s_n, m_n = self.trials[(template, SERVICE)], self.trials[(template, SELF)]
        s_d = self.diffs.get((template, SERVICE, path, kind), 0)
        m_d = self.diffs.get((template, SELF, path, kind), 0)
        p = fisher_greater(min(s_d, s_n), s_n, min(m_d, m_n), m_n) if s_n and m_n else 0.0
        if m_n == 0:
            verdict = UNLEARNED
        elif m_d > 0 and p >= self.alpha:
            verdict = NOISE
        else:
            verdict = REAL
        return Evidence(template, path, kind, s_d, s_n, m_d, m_n, p, verdict)

    def verdict(self, template: str, path: str, kind: str) -> str:
        """``real``, ``noise`` or ``unlearned`` for one path of one endpoint."""
        return self.evidence(template, path, kind).verdict

    def is_noise(self, template: str, path: str, kind: str) -> bool:
        """True when the difference is explained by the monolith's own variation."""
        return self.verdict(template, path, kind) == NOISE
