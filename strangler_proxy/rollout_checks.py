"""The checks of a guarded rollout, as pure functions over a step's window of live evidence.

Each check answers a :class:`CheckResult`: ``passed`` True (healthy), False (unhealthy: a
rollout rolls back unless the check is in dry run) or None (not enough evidence yet: a rollout
holds the step). :func:`decide` turns the results into ``rollback``, ``advance`` or ``hold``.

The statistics (named in ``docs/rollouts.md``):

- **error rate**: the one-sided lower confidence bound of the difference of two proportions
  (service minus monolith), by **Newcombe's hybrid score method** (method 10 of Newcombe,
  1998), built from the two **Wilson score intervals**. The check fails when that bound is
  above ``max_increase``: the service is worse, beyond the allowance, with the given
  confidence. Small samples widen the bound, so a handful of unlucky requests does not roll
  back, while a service answering mostly 5xx fails within a few requests.
- **latency**: the p99 of each side from the proxy's histogram (interpolated inside the bin,
  like Prometheus's ``histogram_quantile``), judged once both sides have ``min_requests``;
  under 200 requests a side, the quantile that leaves out its slowest two
  (:func:`judged_quantile`), so one stall never decides a step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from statistics import NormalDist

from strangler_proxy.live_evidence import SideCounts, Window
from strangler_proxy.rollout_plan import ErrorRateCheck, LatencyCheck


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One check's verdict over one window, with the numbers behind it."""

    name: str
    passed: bool | None  # None: not enough evidence yet
    message: str
    dry_run: bool = False
    numbers: dict[str, float | int | None] = field(default_factory=dict)

    def as_json(self) -> dict[str, object]:
        """Plain data for the state file, the admin API and the audit."""
        return {"check": self.name, "passed": self.passed, "dry_run": self.dry_run,
                "message": self.message, "numbers": self.numbers}


def wilson_bounds(successes: int, n: int, z: float) -> tuple[float, float]:
    """The Wilson score interval of ``successes / n`` for a normal quantile ``z``.

    >>> [round(x, 3) for x in wilson_bounds(20, 20, 1.959963984540054)]
    [0.839, 1.0]
    """
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def difference_lower_bound(x1: int, n1: int, x2: int, n2: int, confidence: float) -> float:
    """One-sided lower bound of ``x1/n1 - x2/n2`` (Newcombe's hybrid score method).

    >>> round(difference_lower_bound(10, 10, 0, 100, 0.95), 3)  # 10/10 errors vs 0/100
    0.785
    >>> difference_lower_bound(1, 100, 0, 100, 0.95) < 0  # one error in 100: not evidence
    True
    """
    z = NormalDist().inv_cdf(confidence)
    p1 = x1 / n1 if n1 else 0.0
    p2 = x2 / n2 if n2 else 0.0
    low1, _ = wilson_bounds(x1, n1, z)
    _, high2 = wilson_bounds(x2, n2, z)
    return (p1 - p2) - math.sqrt((p1 - low1) ** 2 + (high2 - p2) ** 2)


def check_error_rate(window: Window, check: ErrorRateCheck) -> CheckResult:
    """Service error rate against the monolith's in the same window (see module doc).

    With no monolith request in the window (canary 100%), the baseline is taken as 0 errors
    known exactly: the strictest comparison, never an older window.
    """
    s, m = window.service, window.monolith
    if s.requests == 0:
        return CheckResult("error_rate", None, "no service request in this window yet",
                           check.dry_run, _rates(s, m))
    if m.requests:
        bound = difference_lower_bound(s.errors, s.requests, m.errors, m.requests,
                                       check.confidence)
    else:
        z = NormalDist().inv_cdf(check.confidence)
        bound = wilson_bounds(s.errors, s.requests, z)[0]
    numbers = _rates(s, m) | {"lower_bound": round(bound, 6),
                              "max_increase": check.max_increase,
                              "min_errors": check.min_errors}
    ok = bound <= check.max_increase
    text = (f"service {s.errors}/{s.requests} errors ({s.error_rate:.2%}) vs monolith "
            f"{m.errors}/{m.requests} ({m.error_rate:.2%}): the {check.confidence:.0%} lower "
            f"bound of the increase is {bound:+.2%}, allowed {check.max_increase:.2%}")
    if not ok and s.errors < check.min_errors:
        ok = True
        text += f"; not acted on: {s.errors} of the {check.min_errors} errors min_errors asks"
    return CheckResult("error_rate", ok, text, check.dry_run, numbers)


def _rates(s: SideCounts, m: SideCounts) -> dict[str, float | int | None]:
    return {"service_requests": s.requests, "service_errors": s.errors,
            "monolith_requests": m.requests, "monolith_errors": m.errors}


def judged_quantile(requests: int) -> float:
    """The latency quantile judged on ``requests``: p99 from 200 on, else one that leaves
    out the slowest two (at least the median).

    The p99 of fewer than 100 requests is their slowest one, so a single stall would decide
    a step (five requests, one 241 ms pause on a busy machine: rolled back). p99 leaves out
    the slowest 1 %, and at least two requests, whatever the count.

    >>> judged_quantile(1000), judged_quantile(200), judged_quantile(100), judged_quantile(5)
    (0.99, 0.99, 0.98, 0.6)
    >>> judged_quantile(3)
    0.5
    """
    if requests >= 200:
        return 0.99
    return max(0.5, round(1 - 2 / max(requests, 1), 6))


def check_latency(window: Window, check: LatencyCheck, min_requests: int) -> CheckResult:
    """Service p99 against the monolith's p99 × ``max_ratio`` + ``slack_ms``, same window.

    Below 200 requests a side, each side's quantile is :func:`judged_quantile` of its count
    (``service_quantile``, ``monolith_quantile``; the ``*_p99_ms`` numbers are those
    quantiles then).
    """
    s, m = window.service, window.monolith
    sq, mq = judged_quantile(s.requests), judged_quantile(m.requests)
    sp, mp = s.quantile(sq), m.quantile(mq)
    numbers: dict[str, float | int | None] = {
        "service_p99_ms": None if sp is None else round(sp * 1000, 3),
        "monolith_p99_ms": None if mp is None else round(mp * 1000, 3),
        "service_quantile": sq, "monolith_quantile": mq,
        "max_ratio": check.max_ratio, "slack_ms": check.slack_ms}
    if m.requests < min_requests <= s.requests:
        return CheckResult("latency", True, f"only {m.requests} monolith requests in this "
                           "window to compare with (the service takes the traffic): not judged",
                           check.dry_run, numbers)
    if s.requests < min_requests or m.requests < min_requests or sp is None or mp is None:
        return CheckResult("latency", None, f"waiting for {min_requests} requests per side "
                           f"(service {s.requests}, monolith {m.requests})", check.dry_run,
                           numbers)
    allowed = mp * check.max_ratio + check.slack_ms / 1000
    numbers["allowed_ms"] = round(allowed * 1000, 3)
    ok = sp <= allowed
    text = (f"service {_label(sq)} {sp * 1000:.1f} ms vs monolith {_label(mq)} "
            f"{mp * 1000:.1f} ms; allowed {allowed * 1000:.1f} ms (× {check.max_ratio:g} + "
            f"{check.slack_ms:g} ms)")
    return CheckResult("latency", ok, text, check.dry_run, numbers)


def _label(q: float) -> str:
    """``p99``, ``p60``, ``p97.5``: a quantile as people write it."""
    return f"p{q * 100:.4g}"


def check_shadow_match(compared: int, matched: int, min_compared: int, min_rate: float,
                       dry_run: bool) -> CheckResult:
    """The gate over the shadow step's evidence: holds until it clears, never rolls back.

    >>> check_shadow_match(1000, 1000, 200, 0.99, False).passed
    True
    >>> check_shadow_match(10, 10, 200, 0.99, False).passed is None
    True
    """
    low = wilson_bounds(matched, compared, 1.959963984540054)[0] if compared else 0.0
    numbers: dict[str, float | int | None] = {"compared": compared, "matched": matched,
                                              "lower_bound": round(low, 6),
                                              "min_match_rate": min_rate,
                                              "min_compared": min_compared}
    ok = compared >= min_compared and low >= min_rate
    text = (f"{matched}/{compared} shadow exchanges matched, 95% Wilson lower bound "
            f"{low:.2%}; needs >= {min_compared} compared and >= {min_rate:.2%}")
    return CheckResult("shadow_match", True if ok else None, text, dry_run, numbers)


def check_threshold(name: str, value: float | None, low: float | None, high: float | None,
                    dry_run: bool, what: str) -> CheckResult:
    """A number (a Prometheus answer) within ``[low, high]``; None holds (no data).

    >>> check_threshold("prometheus", 0.7, None, 0.5, False, "q").passed
    False
    """
    numbers: dict[str, float | int | None] = {"value": value, "min": low, "max": high}
    if value is None or math.isnan(value):
        return CheckResult(name, None, f"{what}: no answer", dry_run, numbers)
    ok = (low is None or value >= low) and (high is None or value <= high)
    bounds = " and ".join(b for b in (f">= {low:g}" if low is not None else "",
                                      f"<= {high:g}" if high is not None else "") if b)
    return CheckResult(name, ok, f"{what} = {value:g}; must be {bounds}", dry_run, numbers)


def decide(results: list[CheckResult], elapsed: float, interval: float,
           enough_traffic: bool) -> str:
    """``rollback`` on any failed check that acts; ``advance`` when the step's interval is
    over, traffic suffices and every acting check passed; else ``hold``.

    >>> ok = CheckResult("error_rate", True, "")
    >>> decide([ok], 5, 1, True), decide([ok], 0.5, 1, True), decide([ok], 5, 1, False)
    ('advance', 'hold', 'hold')
    >>> decide([CheckResult("latency", False, "", dry_run=True), ok], 5, 1, True)
    'advance'
    """
    acting = [r for r in results if not r.dry_run]
    if any(r.passed is False for r in acting):
        return "rollback"
    if elapsed >= interval and enough_traffic and all(r.passed for r in acting):
        return "advance"
    return "hold"


__all__ = ["CheckResult", "check_error_rate", "check_latency", "check_shadow_match",
           "check_threshold", "decide", "difference_lower_bound", "judged_quantile",
           "wilson_bounds"]
