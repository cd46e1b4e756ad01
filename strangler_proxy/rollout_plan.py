"""``routes[].rollout``: a route's guarded rollout plan, declared and validated.

::

    [[routes]]
    name = "catalog"
    ...
    [routes.rollout]                       # applies to the [[routes]] entry above it
    steps = ["shadow", 1, 5, 25, 50, 100, "service"]
    interval = 60                          # seconds each step must stay healthy
    min_requests = 100                     # per side, per step, before it may step up
    error_rate = { max_increase = 0.01 }   # checks: error_rate, latency, shadow_match,
    latency = { max_ratio = 1.5, slack_ms = 10, dry_run = true }   # prometheus

The keys are declared once here, as dataclass fields (``keys.key_doc``), like the rest of the
routes file; ``config.py`` calls :func:`parse_rollout` with its reader, so the errors name the
key and the line. The statistics the checks use live in ``rollout_checks.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

from strangler_proxy.errors import ConfigError
from strangler_proxy.keys import key_doc, keys_of

Step = str | float  # "shadow", a canary percent, or "service"
DEFAULT_STEPS: tuple[Step, ...] = ("shadow", 1, 5, 25, 50, 100, "service")


@dataclass(frozen=True, slots=True)
class ErrorRateCheck:
    """``routes[].rollout.error_rate``: the service's error rate against the monolith's."""

    max_increase: float = field(default=0.01, metadata=key_doc(
        "fails when the service's error rate exceeds the monolith's in the same window by more "
        "than this, at `confidence` (one-sided Newcombe–Wilson bound on the difference of "
        "two proportions, [rollouts.md](rollouts.md#the-statistics))",
        kind="0..1"))
    confidence: float = field(default=0.95, metadata=key_doc(
        "how sure the bound must be before the check fails", kind="0.5..0.999"))
    min_errors: int = field(default=3, metadata=key_doc(
        "the check fails only once the service has this many errors in the window: fewer are "
        "reported, never acted on, so one stray 5xx among the first requests (1 of 1 against "
        "0 of 2 is a bound of +7 %) does not roll a healthy step back", kind="int ≥ 1"))
    dry_run: bool = field(default=False, metadata=key_doc(
        "measure and report, never act", kind="bool"))


@dataclass(frozen=True, slots=True)
class LatencyCheck:
    """``routes[].rollout.latency``: the service's p99 against the monolith's."""

    max_ratio: float = field(default=1.5, metadata=key_doc(
        "fails when the service's p99 exceeds the monolith's p99 × this + `slack_ms` in the "
        "same window (p99 from the proxy's histograms)", kind="number > 0"))
    slack_ms: float = field(default=10.0, metadata=key_doc(
        "absolute slack added to the allowance, in milliseconds", kind="ms"))
    dry_run: bool = field(default=False, metadata=key_doc(
        "measure and report, never act", kind="bool"))


@dataclass(frozen=True, slots=True)
class ShadowMatchCheck:
    """``routes[].rollout.shadow_match``: today's gate, over the shadow step's evidence."""

    min_match_rate: float | None = field(default=None, metadata=key_doc(
        "the 95% Wilson lower bound of the match rate must reach this to leave the shadow "
        "step (none: `gate.min_match_rate`)", kind="0..1 (below 1)"))
    min_compared: int | None = field(default=None, metadata=key_doc(
        "comparisons needed in the shadow step (none: `gate.min_compared`)", kind="int"))
    dry_run: bool = field(default=False, metadata=key_doc(
        "measure and report, never act", kind="bool"))


@dataclass(frozen=True, slots=True)
class PrometheusCheck:
    """``routes[].rollout.prometheus``: any instant query against a Prometheus server."""

    url: str | None = field(default=None, metadata=key_doc(
        "the Prometheus server, e.g. `http://127.0.0.1:9090`", kind="URL"))
    query: str | None = field(default=None, metadata=key_doc(
        "an instant PromQL query answering one number (`{route}` is replaced by the route "
        "name)", kind="string"))
    max: float | None = field(default=None, metadata=key_doc(
        "fails when the answer is above this", kind="number"))
    min: float | None = field(default=None, metadata=key_doc(
        "fails when the answer is below this", kind="number"))
    dry_run: bool = field(default=False, metadata=key_doc(
        "measure and report, never act", kind="bool"))

    @property
    def enabled(self) -> bool:
        """True when a query is configured."""
        return bool(self.query)


@dataclass(frozen=True, slots=True)
class RolloutPlan:
    """``routes[].rollout``: the steps, their pace and the checks that guard them."""

    steps: tuple[Step, ...] = field(default=DEFAULT_STEPS, metadata=key_doc(
        '`"shadow"` first (optional), canary percents rising, `"service"` last (optional)',
        kind="list"))
    interval: float = field(default=60.0, metadata=key_doc(
        "how long each step must stay healthy before the next one", kind="seconds"))
    min_requests: int = field(default=100, metadata=key_doc(
        "requests each side must have answered in a canary step before it may step up (a "
        "step never advances on no traffic)", kind="int"))
    cutover: str | None = field(default=None, metadata=key_doc(
        "the context whose tables the monolith still owns: the step to `service` is then "
        "left to `strangler cutover CONTEXT` (and going back past it to `--undo`)",
        kind="string"))
    error_rate: ErrorRateCheck = field(default_factory=ErrorRateCheck, metadata=key_doc(
        "check: error rate against the monolith's", kind="inline table"))
    latency: LatencyCheck = field(default_factory=LatencyCheck, metadata=key_doc(
        "check: p99 latency against the monolith's", kind="inline table"))
    shadow_match: ShadowMatchCheck = field(default_factory=ShadowMatchCheck, metadata=key_doc(
        "check: the shadow match lower bound (the gate), to leave the shadow step",
        kind="inline table"))
    prometheus: PrometheusCheck = field(default_factory=PrometheusCheck, metadata=key_doc(
        "check: a Prometheus query (off unless `query` is set)", kind="inline table"))


CHECKS = ("error_rate", "latency", "shadow_match", "prometheus")
TABLES: dict[str, type] = {
    "routes[].rollout": RolloutPlan,
    "routes[].rollout.error_rate": ErrorRateCheck,
    "routes[].rollout.latency": LatencyCheck,
    "routes[].rollout.shadow_match": ShadowMatchCheck,
    "routes[].rollout.prometheus": PrometheusCheck,
}

Path = tuple[str | int, ...]


class Reader(Protocol):
    """What the routes-file parser offers (``config._Reader``)."""

    def error(self, path: Path, message: str) -> ConfigError: ...
    def table(self, data: Any, path: Path, schema: str) -> dict[str, Any]: ...
    def flag(self, data: dict[str, Any], path: Path, key: str, default: bool) -> bool: ...
    def text(self, data: dict[str, Any], path: Path, key: str, default: str | None,
             choices: tuple[str, ...] = ()) -> Any: ...
    def number(self, data: dict[str, Any], path: Path, key: str, default: float | None,
               low: float = 0.0, high: float = math.inf, integer: bool = False) -> Any: ...


def parse_rollout(reader: Reader, path: Path, data: Any, target: str) -> RolloutPlan:
    """Validate a route's ``rollout`` table; refuse unknown checks, disordered steps and
    thresholds that can never be met, naming the key and the line."""
    if isinstance(data, dict):
        for key in data:
            if key not in keys_of(RolloutPlan):
                raise reader.error((*path, key), f"unknown check or key; the checks are "
                                   f"{', '.join(CHECKS)} and the keys steps, interval, "
                                   "min_requests, cutover (see docs/rollouts.md)")
    table = reader.table(data, path, "routes[].rollout")
    if target == "monolith":
        raise reader.error(path, "the route's target is the monolith; a rollout moves "
                           "traffic to a service, set target = \"SERVICE\" first")
    d = RolloutPlan()
    steps = _steps(reader, (*path, "steps"), table.get("steps", list(d.steps)))
    cutover = reader.text(table, path, "cutover", None)
    if cutover is not None and steps[-1] != "service":
        last = steps[-1] if isinstance(steps[-1], str) else f"canary {steps[-1]:g}%"
        raise reader.error((*path, "cutover"), f"{cutover!r} names the cutover that ends the "
                           f"rollout, but the last step is {last}, not \"service\"; "
                           "end steps with \"service\" or drop cutover")
    return RolloutPlan(
        steps=steps,
        interval=reader.number(table, path, "interval", d.interval, 0.1),
        min_requests=reader.number(table, path, "min_requests", d.min_requests, 1,
                                   integer=True),
        cutover=cutover,
        error_rate=_error_rate(reader, (*path, "error_rate"), table.get("error_rate", {})),
        latency=_latency(reader, (*path, "latency"), table.get("latency", {})),
        shadow_match=_shadow_match(reader, (*path, "shadow_match"),
                                   table.get("shadow_match", {})),
        prometheus=_prometheus(reader, (*path, "prometheus"), table.get("prometheus", {})),
    )


def _steps(reader: Reader, path: Path, value: Any) -> tuple[Step, ...]:
    example = 'e.g. steps = ["shadow", 1, 5, 25, 50, 100, "service"]'
    if not isinstance(value, list) or not value:
        raise reader.error(path, f"{value!r} must be a non-empty list, {example}")
    steps: list[Step] = []
    last = 0.0
    for index, step in enumerate(value):
        where = (*path, index)
        if step == "shadow":
            if index != 0:
                raise reader.error(where, f"\"shadow\" is step {index + 1}; it can only be the "
                                   f"first step, {example}")
        elif step == "service":
            if index != len(value) - 1:
                raise reader.error(where, f"\"service\" is step {index + 1} of {len(value)}; "
                                   f"it can only be the last step, {example}")
        elif isinstance(step, int | float) and not isinstance(step, bool):
            if not 0 < step <= 100:
                raise reader.error(where, f"{step} is not a canary percent in (0, 100]")
            if step <= last:
                raise reader.error(where, f"{step} comes after {last:g}; canary percents "
                                   f"must rise step by step, {example}")
            last = float(step)
        else:
            raise reader.error(where, f"{step!r} is not \"shadow\", a canary percent or "
                               "\"service\"")
        steps.append(step if isinstance(step, str) else float(step))
    return tuple(steps)


def _error_rate(reader: Reader, path: Path, data: Any) -> ErrorRateCheck:
    table = reader.table(data, path, "routes[].rollout.error_rate")
    d = ErrorRateCheck()
    return ErrorRateCheck(
        max_increase=reader.number(table, path, "max_increase", d.max_increase, 0, 1),
        confidence=reader.number(table, path, "confidence", d.confidence, 0.5, 0.999),
        min_errors=reader.number(table, path, "min_errors", d.min_errors, 1, integer=True),
        dry_run=reader.flag(table, path, "dry_run", False))


def _latency(reader: Reader, path: Path, data: Any) -> LatencyCheck:
    table = reader.table(data, path, "routes[].rollout.latency")
    d = LatencyCheck()
    ratio = reader.number(table, path, "max_ratio", d.max_ratio, 0)
    if ratio == 0:
        raise reader.error((*path, "max_ratio"), "0 can never be met (no service answers "
                           "in no time); use e.g. max_ratio = 1.5")
    return LatencyCheck(max_ratio=ratio,
                        slack_ms=reader.number(table, path, "slack_ms", d.slack_ms, 0),
                        dry_run=reader.flag(table, path, "dry_run", False))


def _shadow_match(reader: Reader, path: Path, data: Any) -> ShadowMatchCheck:
    table = reader.table(data, path, "routes[].rollout.shadow_match")
    rate = reader.number(table, path, "min_match_rate", None, 0, 1)
    if rate is not None and rate >= 1:
        raise reader.error((*path, "min_match_rate"), f"{rate} can never be met: the 95% "
                           "Wilson lower bound of a match rate stays below 1 on any finite "
                           "evidence; use e.g. 0.99")
    return ShadowMatchCheck(
        min_match_rate=rate,
        min_compared=reader.number(table, path, "min_compared", None, 1, integer=True),
        dry_run=reader.flag(table, path, "dry_run", False))


def _prometheus(reader: Reader, path: Path, data: Any) -> PrometheusCheck:
    table = reader.table(data, path, "routes[].rollout.prometheus")
    check = PrometheusCheck(
        url=reader.text(table, path, "url", None), query=reader.text(table, path, "query", None),
        max=reader.number(table, path, "max", None, -math.inf),
        min=reader.number(table, path, "min", None, -math.inf),
        dry_run=reader.flag(table, path, "dry_run", False))
    if not table:
        return check
    if not check.url or urlsplit(check.url).scheme not in ("http", "https"):
        raise reader.error((*path, "url"), f"{check.url!r} must be the Prometheus server's "
                           "http(s) URL, e.g. url = \"http://127.0.0.1:9090\"")
    if not check.query:
        raise reader.error((*path, "query"), "is missing; give the PromQL query to check")
    if check.max is None and check.min is None:
        raise reader.error(path, "needs max = N and/or min = N: the bound the answer must stay "
                           "within")
    if check.max is not None and check.min is not None and check.min > check.max:
        raise reader.error((*path, "min"), f"{check.min:g} is above max = {check.max:g}; no "
                           "answer can meet both")
    return check


__all__ = ["CHECKS", "DEFAULT_STEPS", "TABLES", "ErrorRateCheck", "LatencyCheck",
           "PrometheusCheck", "RolloutPlan", "ShadowMatchCheck", "Step", "parse_rollout"]
