"""The promotion gate: may a route move to canary or service on the evidence so far?

The evidence is the route's shadow record in the diff store, after learned noise is taken
out (the same numbers ``strangler shadow report`` shows). The gate asks for two things:

- at least ``[gate].min_compared`` compared exchanges, and
- the **lower bound of the 95% Wilson score interval** of the match rate at or above
  ``[gate].min_match_rate``.

Why the lower bound and not the observed rate: 20 matches out of 20 is a 100% observed rate
but says little; the lower bound (83.9%) is what the evidence supports. It also makes
``needed`` meaningful: how many more consecutive matching exchanges would clear the gate.
With ``min_match_rate = 1.0`` the bound can never reach 1, so that setting means "no
mismatch at all, over at least ``min_compared``" and the observed rate is used instead.

Moving to ``monolith`` or ``shadow`` is always allowed (it only reduces risk).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Final

from strangler_proxy.config import ProxyConfig
from strangler_proxy.shadow.evidence import route_evidence
from strangler_proxy.shadow.store import open_config_store

SAFE_MODES: Final = frozenset({"monolith", "shadow"})
GATED_MODES: Final = frozenset({"canary", "service"})
Z95: Final = 1.959963984540054
_SEARCH_LIMIT: Final = 10**9


@dataclass(frozen=True, slots=True)
class GateDecision:
    """The gate's answer, with the numbers behind it."""

    allowed: bool
    reason: str
    compared: int
    match_rate: float
    needed: int  # more consecutive matches needed (0 when allowed, -1 when none can do it)
    lower_bound: float = 0.0


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion (95% by default).

    >>> [round(x, 3) for x in wilson_interval(20, 20)]
    [0.839, 1.0]
    >>> wilson_interval(0, 0)
    (0.0, 1.0)
    """
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def _clears(matched: int, compared: int, min_compared: int, min_rate: float) -> bool:
    if compared < min_compared:
        return False
    if compared == 0:
        return min_rate <= 0
    if min_rate >= 1.0:
        return matched == compared
    return wilson_interval(matched, compared)[0] >= min_rate


def needed_matches(matched: int, compared: int, min_compared: int, min_rate: float) -> int:
    """How many more consecutive matching exchanges the gate needs; -1 if none would do.

    >>> needed_matches(0, 0, 10, 0.8)  # 16/16 has a lower bound of 0.806
    16
    >>> needed_matches(100, 100, 10, 0.9)
    0
    >>> needed_matches(9, 10, 5, 1.0)
    -1
    """
    if _clears(matched, compared, min_compared, min_rate):
        return 0
    if min_rate >= 1.0:
        return -1 if matched < compared else max(0, min_compared - compared)
    low = max(1, min_compared - compared)
    if _clears(matched + low, compared + low, min_compared, min_rate):
        return low
    high = low * 2
    while not _clears(matched + high, compared + high, min_compared, min_rate):
        if high > _SEARCH_LIMIT:
            return -1
        low, high = high, high * 2
    while high - low > 1:  # invariant: low fails, high clears
        mid = (low + high) // 2
        if _clears(matched + mid, compared + mid, min_compared, min_rate):
            high = mid
        else:
            low = mid
    return high


def decide(route: str, new_mode: str, compared: int, matched: int, min_compared: int,
           min_rate: float) -> GateDecision:
    """The pure gate decision from counts (``check_promotion`` reads them from the store).

    >>> decide("catalog", "service", 50, 50, 200, 0.99).allowed
    False
    >>> decide("catalog", "shadow", 0, 0, 200, 0.99).allowed
    True
    """
    rate = matched / compared if compared else 0.0
    low = wilson_interval(matched, compared)[0] if compared else 0.0
    if new_mode in SAFE_MODES:
        return GateDecision(True, f"moving {route!r} to {new_mode} needs no evidence",
                            compared, rate, 0, low)
    needed = needed_matches(matched, compared, min_compared, min_rate)
    if needed == 0:
        return GateDecision(True, f"{route!r}: {matched}/{compared} matched ({rate:.2%}; 95% "
                            f"lower bound {low:.2%} >= {min_rate:.2%})", compared, rate, 0, low)
    more = ("no number of further matches can clear it; fix the differences and reset the "
            "evidence (--since, or a fresh store)" if needed < 0
            else f"needs {needed} more matching exchanges")
    return GateDecision(
        False, f"{route!r}: {matched}/{compared} shadow exchanges matched ({rate:.2%}, 95% "
        f"lower bound {low:.2%}); the gate needs >= {min_compared} compared and a lower bound "
        f">= {min_rate:.2%}: {more}", compared, rate, needed, low)


def since_text(since: float | None) -> str:
    """The evidence window as a phrase for messages and the audit.

    >>> since_text(None)
    'all evidence'
    >>> since_text(1704153600.0)
    'evidence since 2024-01-02T00:00:00+00:00'
    """
    if since is None:
        return "all evidence"
    return f"evidence since {datetime.fromtimestamp(since, UTC).isoformat(timespec='seconds')}"


def check_promotion(config: ProxyConfig, route_name: str, new_mode: str,
                    since: float | None = None) -> GateDecision:
    """May ``route_name`` move to ``new_mode``? Reads the route's evidence from the diff store.

    ``since`` (a Unix time) is the evidence window: only exchanges recorded at or after it
    count, so mismatches from before a fix stop holding the gate shut. ``None`` counts all.
    ``strangler routes set`` and the admin API call this; they own ``--force`` and the audit.
    """
    gate = config.gate
    if new_mode in SAFE_MODES:
        return decide(route_name, new_mode, 0, 0, gate.min_compared, gate.min_match_rate)
    store = open_config_store(config)
    try:
        compared, matched = route_evidence(store, route_name, since=since)
    finally:
        store.close()
    decision = decide(route_name, new_mode, compared, matched, gate.min_compared,
                      gate.min_match_rate)
    return replace(decision, reason=f"{decision.reason} [{since_text(since)}]")
