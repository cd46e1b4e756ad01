"""Guarded rollouts driven by the running proxy: step up while healthy, roll back by itself.

::

    every tick (<= 1 s):  sample the counters (summed over workers) into the evidence ring
                          for each running rollout:
                              window = ring.between(route, step started)
                              checks = error_rate, latency (live) | shadow_match (shadow step)
                                       | prometheus                  (rollout_checks.py)
                              decide -> rollback | advance | hold
                              flip through routes_edit.apply_route_change(via="rollout")

The state of every rollout is a JSON file beside the routes file
(``<config>.rollouts.json``), written atomically on each change, so a restarted proxy picks
its rollouts up again; the evidence is in memory, so after a restart the current step's
window starts afresh (never on a stale baseline). A rollback goes to the last *safe* mode the
rollout passed through (``shadow`` or ``monolith``: no client depends on the service there),
at once, audited with the numbers. The step to ``service`` of a route whose tables the
monolith owns (``cutover = "CONTEXT"`` in the plan) is left to ``strangler cutover``: the
proxy never moves data ownership.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from strangler_proxy.config import ProxyConfig, Route
from strangler_proxy.control.audit import AuditRecord, append_audit, now_iso
from strangler_proxy.control.routes_edit import apply_route_change
from strangler_proxy.errors import ProxyError
from strangler_proxy.export.log_windows import LogWindows, engine_log_path
from strangler_proxy.live_evidence import EvidenceRing, Window, sample
from strangler_proxy.metrics import Metrics
from strangler_proxy.rollout_checks import (
    CheckResult,
    check_error_rate,
    check_latency,
    check_shadow_match,
    check_threshold,
    decide,
)
from strangler_proxy.rollout_plan import RolloutPlan, Step
from strangler_proxy.shadow import check_promotion
from strangler_proxy.write_atomic import write_atomic

ACTIONS = ("start", "pause", "resume", "promote", "abort")
SAFE = ("monolith", "shadow")
# the statuses in which each action makes sense (start: see RolloutDriver._start)
ALLOWED = {"pause": ("running",), "resume": ("paused",), "promote": ("running", "paused"),
           "abort": ("running", "paused", "awaiting_cutover", "rolling_back")}
STOPPED = ("done", "aborted", "rolled_back")
HISTORY = 50  # decisions kept per rollout in the state file


class RolloutError(ProxyError):
    """A rollout action cannot be done (no plan, not running, unknown action)."""


@dataclass
class RolloutState:
    """One route's rollout, as the state file keeps it."""

    route: str
    status: str  # running | paused | awaiting_cutover | rolling_back (a failed rollback, retried)
    #              | done | rolled_back | aborted
    step: int  # index into the plan's steps; -1 before the first flip
    step_started: float
    safe: dict[str, Any]  # the last safe {"mode", "percent"} passed through
    started_by: str = ""
    updated: float = 0.0
    checks: list[dict[str, Any]] = field(default_factory=list)  # the latest verdicts
    history: list[dict[str, Any]] = field(default_factory=list)  # flips and actions
    retry: str = ""  # rolling_back: the reason of the rollback to try again next tick


def state_path(config_path: str | Path) -> Path:
    """``strangler.toml`` -> ``strangler.toml.rollouts.json`` beside it."""
    path = Path(config_path)
    return path.with_name(path.name + ".rollouts.json")


def load_states(config_path: str | Path) -> dict[str, RolloutState]:
    """The rollouts recorded beside a routes file (empty when none or unreadable)."""
    try:
        data = json.loads(state_path(config_path).read_text(encoding="utf-8"))
        return {name: RolloutState(**item) for name, item in data.get("rollouts", {}).items()}
    except (OSError, ValueError, TypeError):
        return {}


def step_mode(step: Step) -> tuple[str, float | None]:
    """``"shadow"`` -> (shadow, None); ``25`` -> (canary, 25); ``"service"`` -> (service, None)."""
    if isinstance(step, str):
        return step, None
    return "canary", step


def show_step(step: Step) -> str:
    """A step as people read it: ``shadow``, ``canary 25%``, ``service``."""
    mode, percent = step_mode(step)
    return mode if percent is None else f"canary {percent:g}%"


class Driven(Protocol):
    """What the driver needs from the app (:class:`~strangler_proxy.control.app.ProxyApp`)."""

    config_path: Path

    @property
    def config(self) -> ProxyConfig: ...
    def total_metrics(self) -> Metrics: ...
    def reload(self, force: bool = False) -> tuple[bool, str]: ...


@dataclass(frozen=True, slots=True)
class _Allowed:
    """The rollout is the gate for its own flips: its checks already decided."""

    reason: str
    allowed: bool = True


class RolloutDriver:
    """Runs every route's rollout inside the proxy (the admin worker's event loop)."""

    def __init__(self, app: Driven, ring: EvidenceRing | None = None) -> None:
        self.app = app
        self.ring = ring or EvidenceRing()
        self.states = load_states(app.config_path)
        now = time.time()
        for state in self.states.values():
            state.step_started = now  # evidence was in memory: the window starts afresh
        self.lock = asyncio.Lock()
        self.engine_log: LogWindows | None = None  # read when an exported nginx serves

    # -- the loop --------------------------------------------------------------------------

    async def run(self, tick: float | None = None) -> None:
        """Sample and drive until cancelled (one tick <= 1 s, shorter for short intervals)."""
        while True:
            with contextlib.suppress(Exception):  # a bad tick must never kill the proxy
                await self.tick()
            await asyncio.sleep(tick or self._tick_seconds())

    def _tick_seconds(self) -> float:
        intervals = [r.rollout.interval for r in self.app.config.routes if r.rollout]
        return max(0.05, min([1.0, *(i / 5 for i in intervals)]))

    def sample_now(self) -> None:
        """Add one sample of the (worker-summed) counters to the ring."""
        self.ring.add(time.time(), self._sample())

    # Seam for several replicas (control/cluster.py): the evidence is summed over the
    # replicas, and only the leader drives.
    def _sample(self) -> dict[str, Any]:  # route -> side -> SideCounts, as sample() gives
        config = self.app.config
        return sample(self.app.total_metrics(), {r.name: r.target for r in config.routes})

    def _leads(self) -> bool:
        return True

    async def tick(self) -> None:
        """One sample, then one decision per running rollout (on the leading replica)."""
        self.sample_now()
        if not self._leads():
            return
        async with self.lock:
            for state in list(self.states.values()):
                if state.status == "running":
                    await self._drive(state)
                elif state.status == "rolling_back":
                    await self._rollback(state, state.retry)
                elif state.status == "awaiting_cutover":
                    await self._cutover_done(state)

    async def _cutover_done(self, state: RolloutState) -> None:
        """``strangler cutover`` moved the route to service: the rollout is done."""
        route = self.app.config.route(state.route)
        if route is not None and route.mode == "service":
            await self._stop(state, "done", "strangler cutover moved the route to service")

    async def _drive(self, state: RolloutState) -> None:
        route = self.app.config.route(state.route)
        if route is None or route.rollout is None:
            await self._stop(state, "aborted", "the route or its rollout plan left the file")
            return
        plan = route.rollout
        if state.step < 0:
            await self._flip(state, route, 0, "rollout started")
            self._save()  # durable at once: a restart before the next tick keeps the step
            return
        results, enough = await self._checks(state, route, plan)
        state.checks = [r.as_json() for r in results]
        elapsed = time.time() - state.step_started
        verdict = decide(results, elapsed, plan.interval, enough)
        if verdict == "rollback":
            failed = [r for r in results if r.passed is False and not r.dry_run]
            why = "; ".join(f"{r.name}: {r.message}" for r in failed)
            await self._rollback(state, f"rolled back by the rollout: {why}", results)
        elif verdict == "advance":
            await self._advance(state, route, plan, results)
        self._save()

    async def _checks(self, state: RolloutState, route: Route, plan: RolloutPlan,
                      ) -> tuple[list[CheckResult], bool]:
        step = plan.steps[state.step]
        results: list[CheckResult] = []
        if step == "shadow":
            results.append(await asyncio.to_thread(self._shadow_check, route, plan,
                                                   state.step_started))
            enough = True
        else:
            # on the loop, not a thread: view() reads the same log (a tick reads a second of it)
            window = self._window(route.name, state.step_started)
            results += [check_error_rate(window, plan.error_rate),
                        check_latency(window, plan.latency, plan.min_requests)]
            enough = _enough(window, step, plan.min_requests)
        if plan.prometheus.enabled:
            results.append(await asyncio.to_thread(prometheus_check, plan, route.name))
        return results, enough

    def _window(self, route: str, since: float) -> Window:
        """A step's live evidence: the proxy's own counters, or, when an exported nginx
        serves the clients (``[export] engine = "nginx"``), its access log."""
        path = engine_log_path(self.app.config)
        if path is None:
            return self.ring.between(route, since)
        if self.engine_log is None or self.engine_log.path != path:
            self.engine_log = LogWindows(path)
        self.engine_log.read_new()
        return self.engine_log.between(route, since, time.time())

    def _shadow_check(self, route: Route, plan: RolloutPlan, since: float) -> CheckResult:
        gate = self.app.config.gate
        check = plan.shadow_match
        decision = check_promotion(self.app.config, route.name, "canary", since)
        matched = round(decision.match_rate * decision.compared)
        return check_shadow_match(decision.compared, matched,
                                  check.min_compared or gate.min_compared,
                                  check.min_match_rate or gate.min_match_rate, check.dry_run)

    # -- flips -------------------------------------------------------------------------------

    async def _flip(self, state: RolloutState, route: Route, index: int, reason: str,
                    who: str = "rollout") -> None:
        plan = route.rollout
        assert plan is not None
        step = plan.steps[index]
        if step == "service" and plan.cutover:
            state.step = index
            await self._stop(state, "awaiting_cutover", f"the step to service moves the "
                             f"tables of {plan.cutover}: run `strangler cutover "
                             f"{plan.cutover}`")
            return
        mode, percent = step_mode(step)
        gate = _Allowed(f"rollout step {index + 1}/{len(plan.steps)}: {reason}")
        change = await asyncio.to_thread(
            apply_route_change, self.app.config_path, route.name, mode, percent,
            f"rollout step {index + 1}/{len(plan.steps)} ({show_step(step)}): {reason}",
            False, who, "rollout", lambda *_: gate)
        self.app.reload(force=True)
        if state.step >= 0 and route.mode in SAFE:
            state.safe = {"mode": route.mode, "percent": route.percent}
        state.step = index
        state.step_started = time.time()
        state.checks = []  # the new step has no verdict yet
        self._note(state, "flip", f"{change.describe()}: {reason}")
        if step == "service":
            await self._stop(state, "done", "reached service")

    async def _advance(self, state: RolloutState, route: Route, plan: RolloutPlan,
                       results: list[CheckResult], reason: str = "") -> None:
        if state.step + 1 >= len(plan.steps):
            await self._stop(state, "done", f"the last step ({show_step(plan.steps[-1])}) "
                             "held for its interval")
            return
        why = reason or "; ".join(f"{r.name}{' (dry run)' if r.dry_run else ''}: {r.message}"
                                  for r in results)
        await self._flip(state, route, state.step + 1, why)

    async def _rollback(self, state: RolloutState, reason: str,
                        results: list[CheckResult] | None = None, status: str = "rolled_back",
                        who: str = "rollout") -> None:
        """Flip the route to the last safe mode, then stop with ``status``.

        A flip that fails (the file cannot be written, the edit is refused) leaves the
        rollout ``rolling_back``: the proxy tries again every tick, since the service that
        failed a check must not keep its share of clients. An abort by a person raises
        instead, with the reason, and changes nothing.
        """
        mode = str(state.safe.get("mode", "monolith"))
        try:
            change = await asyncio.to_thread(
                apply_route_change, self.app.config_path, state.route, mode, None, reason,
                False, who, "rollout")
        except (ProxyError, OSError) as exc:
            if status == "aborted":
                raise RolloutError(f"{state.route}: the abort could not move the route to "
                                   f"{mode} ({exc}); nothing changed") from None
            if state.status != "rolling_back":
                state.status, state.retry = "rolling_back", reason
                self._note(state, "rollback failed", f"{exc}; retrying every tick")
                self._save()
            return
        self.app.reload(force=True)
        self._note(state, "rollback", f"{change.describe()}: {reason}",
                   [r.as_json() for r in results or []])
        route = self.app.config.route(state.route)
        steps = route.rollout.steps if route is not None and route.rollout else ()
        state.step = steps.index(mode) if mode in steps else -1  # where the route is now
        state.retry = ""
        await self._stop(state, status, reason)

    async def _stop(self, state: RolloutState, status: str, why: str) -> None:
        state.status = status
        self._note(state, status, why)
        self._save()

    def _note(self, state: RolloutState, kind: str, text: str,
              checks: list[dict[str, Any]] | None = None) -> None:
        state.updated = time.time()
        entry: dict[str, Any] = {"when": now_iso(), "kind": kind, "text": text}
        if checks:
            entry["checks"] = checks
        state.history = [*state.history, entry][-HISTORY:]

    def _save(self) -> None:
        data = {"version": 1, "rollouts": {n: asdict(s) for n, s in self.states.items()}}
        write_atomic(state_path(self.app.config_path), json.dumps(data, indent=2))

    # -- actions (the admin API, `strangler rollout ROUTE ACTION`) -----------------------

    async def act(self, name: str, action: str, who: str) -> dict[str, Any]:
        """Start, pause, resume, promote or abort route ``name``'s rollout; audited."""
        if action not in ACTIONS:
            raise RolloutError(f"unknown action {action!r}; use one of {', '.join(ACTIONS)}")
        route = self.app.config.route(name)
        if route is None or route.rollout is None:
            raise RolloutError(f"route {name!r} has no [routes.rollout] plan in "
                               f"{self.app.config_path}; add one (docs/rollouts.md)")
        async with self.lock:
            state = self.states.get(name)
            before = state.status if state else "none"
            if action == "start":
                state = self._start(route, who, state)
            elif state is None or state.status not in ALLOWED[action]:
                raise RolloutError(_refusal(name, action, before, route.rollout))
            elif action == "pause":
                state.status = "paused"
            elif action == "resume":
                state.status = "running"
                state.step_started = time.time()  # a fresh window, never a stale baseline
            elif action == "promote":
                state.status = "running"
                await self._advance(state, route, route.rollout, [],
                                    reason=f"promoted by hand by {who}")
            else:
                await self._rollback(state, f"aborted by {who}", status="aborted", who=who)
            if action != "abort":
                self._note(state, action, f"{action} by {who}")
            append_audit(self.app.config_path, AuditRecord(
                when=now_iso(), who=who, route=name, old={"rollout": before},
                new={"rollout": state.status}, reason=f"rollout {action}", via="rollout"))
            self._save()
            return self.view(name)

    def _start(self, route: Route, who: str, state: RolloutState | None) -> RolloutState:
        if state is not None and state.status not in STOPPED:
            raise RolloutError(f"{route.name}: a rollout is already {state.status}; pause, "
                               "resume, promote or abort it")
        if route.mode == "service":
            raise RolloutError(f"{route.name} is already in service mode; a rollout moves a "
                               "route towards service. To go back, use `strangler routes set "
                               f"{route.name} --mode shadow` (or `strangler cutover CONTEXT "
                               "--undo` after a cutover)")
        mode = route.mode if route.mode in SAFE else "monolith"
        state = RolloutState(route.name, "running", -1, time.time(),
                             {"mode": mode, "percent": 0}, started_by=who)
        self.states[route.name] = state
        return state

    def view(self, name: str | None = None) -> dict[str, Any]:
        """Every rollout (or one) with its plan position and the latest check verdicts."""
        config = self.app.config
        out = {}
        for route_name, state in self.states.items():
            if name is not None and route_name != name:
                continue
            route = config.route(route_name)
            steps = list(route.rollout.steps) if route and route.rollout else []
            window = self._window(route_name, state.step_started)
            checks = state.checks
            if route and route.rollout and 0 <= state.step < len(steps) and \
                    steps[state.step] != "shadow" and state.status in ("running", "paused"):
                # The current step's checks as of now, also while paused or between ticks
                # (the stored verdicts are the last tick's, possibly the previous step's).
                plan = route.rollout
                live = [check_error_rate(window, plan.error_rate),
                        check_latency(window, plan.latency, plan.min_requests)]
                checks = [r.as_json() for r in live] + \
                    [c for c in state.checks if c.get("check") == "prometheus"]
            out[route_name] = asdict(state) | {
                "checks": checks,
                "steps": steps, "current": (show_step(steps[state.step])
                                            if 0 <= state.step < len(steps) else None),
                "window": window.as_json()}
        if name is not None and name not in out:
            raise RolloutError(f"{name}: no rollout recorded; start one with "
                               f"`strangler rollout {name} start`")
        return {"rollouts": out}


def _refusal(name: str, action: str, status: str, plan: RolloutPlan) -> str:
    """Why ``action`` makes no sense for a rollout that is ``status``, and what does."""
    start = f"start one with `strangler rollout {name} start`"
    if status == "none" or status in STOPPED:
        return f"{name}: no rollout in progress ({status}); {start}"
    if status == "awaiting_cutover":
        return (f"{name}: the rollout waits for `strangler cutover {plan.cutover}` (the step "
                f"to service moves data ownership, which only the cutover does); it cannot "
                f"{action}; abort it to go back")
    if status == "rolling_back":
        return f"{name}: the rollout is rolling back (retried every tick); it cannot {action}"
    if action == "resume":
        return f"{name}: the rollout is {status}, not paused; nothing to resume"
    return f"{name}: the rollout is already {status}; nothing to {action}"


def _enough(window: Window, step: Step, min_requests: int) -> bool:
    """Both sides saw ``min_requests`` (only the service at canary 100 and in service)."""
    if window.service.requests < min_requests:
        return False
    return not (isinstance(step, float) and step < 100) or \
        window.monolith.requests >= min_requests


def prometheus_check(plan: RolloutPlan, route: str) -> CheckResult:
    check = plan.prometheus
    query = (check.query or "").replace("{route}", route)
    value: float | None = None
    what = f"prometheus {query!r}"
    try:
        url = f"{(check.url or '').rstrip('/')}/api/v1/query?" + urllib.parse.urlencode(
            {"query": query})
        with urllib.request.urlopen(url, timeout=2.0) as response:  # noqa: S310 - from config
            data = json.loads(response.read())
        result = data.get("data", {}).get("result")
        kind = data.get("data", {}).get("resultType")
        if kind == "scalar" and result:
            value = float(result[1])
        elif kind == "vector" and result:
            value = float(result[0]["value"][1])
    except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        what += f" ({exc})"
    return check_threshold("prometheus", value, check.min, check.max, check.dry_run, what)


__all__ = ["ACTIONS", "RolloutDriver", "RolloutError", "RolloutState", "load_states",
           "prometheus_check",
           "show_step", "state_path", "step_mode"]
