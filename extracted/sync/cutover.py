"""Move a context's ownership as one fenced, audited, reversible step (contract 6).

``cutover`` (monolith -> service), in this order::

    prepare   install the fence triggers on both sides (inert), check the routes and the
              owner, catch both streams up (forward, and the reverse one: it works)
    fence     the monolith refuses writes to the moved tables, in the database   <- pause starts
    settle    wait until every write transaction that began before the fence has ended
    drain     deliver the forward stream up to its head
    flip      the service owns the context; the service's own fence is lifted; the service
              now refuses the monolith's events for it (the fence makes sure there are none),
              and its outbox, which the reverse stream follows, is the source of changes
    verify    every moved aggregate's last sequence is the same on both sides
    route     the routes are switched to the service                              <- pause ends

``undo`` (service -> monolith) is the mirror image: the *service* is fenced, the reverse
stream is drained into the monolith's tables (nothing the service accepted is lost), the
monolith is unfenced and owns the context again, the route goes back. A step that fails
after the fence rolls the completed steps back, so a failed cutover leaves the monolith the
owner, writable. Every step is timed and written to the audit log; the write pause (fence
to route switch) is the number to watch.

The stream processes themselves (``strangler relay`` in each direction) keep running
outside; this drains them in-process with the same ``Relay`` to the last event.
"""

from __future__ import annotations

import json
import time
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from extracted.sync import fence
from extracted.sync.database import Database, check_identifier
from extracted.sync.delivery import EventsEndpoint
from extracted.sync.errors import CutoverFailed
from extracted.sync.outbox import OutboxTable, SequenceTable
from extracted.sync.relay import Relay, RelayOptions
from extracted.sync.service import ServiceInternals
from extracted.sync.spec import ContextSpec


@dataclass
class CutoverPlan:
    """Where both sides are (every field is a CLI option of ``strangler cutover``)."""

    context: ContextSpec
    monolith_db: str
    service_db: str
    service_url: str
    monolith_url: str
    token: str
    routes: Path | None = None
    actor: str = "unknown"
    audit_log: Path | None = None
    wait_timeout: float = 60.0


@dataclass
class CutoverReport:
    """What happened: each step's seconds, the write pause, the outcome."""

    direction: str
    steps: dict[str, float] = field(default_factory=dict)
    pause: float = 0.0
    ok: bool = False
    error: str = ""
    rolled_back: list[str] = field(default_factory=list)
    drained: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The report as JSON (``--json`` and the audit log)."""
        return {"direction": self.direction, "steps": self.steps, "pause": self.pause,
                "ok": self.ok, "error": self.error, "rolled_back": self.rolled_back,
                "drained": self.drained}


class _Run:
    """One cutover or undo in progress: connections, timings, rollback actions."""

    def __init__(self, plan: CutoverPlan, direction: str) -> None:
        self.plan, self.report = plan, CutoverReport(direction)
        self.monolith = Database(plan.monolith_db)
        self.service_db = Database(plan.service_db)
        self.service = ServiceInternals(plan.service_url, plan.token)
        self.undo_steps: list[tuple[str, Callable[[], None]]] = []

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        yield
        self.report.steps[name] = round(time.monotonic() - started, 3)

    def close(self) -> None:
        self.service.close()
        self.monolith.close()
        self.service_db.close()


def cutover(plan: CutoverPlan) -> CutoverReport:
    """Monolith -> service; see the module doc."""
    return _run(plan, "cutover")


def undo(plan: CutoverPlan) -> CutoverReport:
    """Service -> monolith, replaying the service's changes first; see the module doc."""
    return _run(plan, "undo")


def _run(plan: CutoverPlan, direction: str) -> CutoverReport:
    run = _Run(plan, direction)
    paused_at = 0.0
    try:
        _prepare(run)
        paused_at = time.monotonic()
        (_move_to_service if direction == "cutover" else _move_to_monolith)(run)
        with run.step("route"):
            _switch_route(plan, "service" if direction == "cutover" else "monolith")
        run.report.pause = round(time.monotonic() - paused_at, 3)
        run.report.ok = True
    except Exception as exc:  # noqa: BLE001 - every failure rolls back, then is reported
        run.report.error = str(exc) or exc.__class__.__name__
        for name, action in reversed(run.undo_steps):
            try:
                action()
                run.report.rolled_back.append(name)
            except Exception as again:  # noqa: BLE001
                run.report.rolled_back.append(f"{name} FAILED: {again}")
        if paused_at:
            run.report.pause = round(time.monotonic() - paused_at, 3)
    finally:
        run.close()
        _audit(plan, run.report)
    return run.report


def _prepare(run: _Run) -> None:
    ctx = run.plan.context
    with run.step("prepare"):
        _check_routes(run.plan)
        fence.install(run.monolith, ctx.moved_tables, ctx.name)
        fence.install(run.service_db, [t.target_table for t in ctx.tables], ctx.name)
        owner = _owner(run)
        wanted = "monolith" if run.report.direction == "cutover" else "service"
        if owner != wanted:
            raise CutoverFailed(f"{ctx.name} is owned by the {owner} already; nothing to "
                                f"{run.report.direction}")
        # catch both streams up while writes still flow: the pause then only has the tail
        # of the old owner's stream to deliver, and the other stream is known to work
        _drain(run, "forward", strict=False)
        _drain(run, "reverse", strict=False)


def _move_to_service(run: _Run) -> None:
    ctx = run.plan.context
    with run.step("fence"):
        fence.fence(run.monolith, ctx.moved_tables, ctx.name)
        run.undo_steps.append(("unfence monolith", lambda: fence.unfence(run.monolith,
                                                                          ctx.name)))
    with run.step("settle"):
        run.monolith.wait_for_writers(timeout=run.plan.wait_timeout)
    with run.step("drain"):
        _drain(run, "forward")
    with run.step("flip"):
        _set_owner(run, "service")
        run.undo_steps.append(("owner monolith", lambda: _set_owner(run, "monolith")))
        fence.unfence(run.service_db, ctx.name)
        run.undo_steps.append(("fence service", lambda: fence.fence(
            run.service_db, [t.target_table for t in ctx.tables], ctx.name)))
    # The reverse stream needs no step here: it was drained in prepare, and the service's
    # outbox gets nothing new until the route sends it writes; the running relay carries
    # what comes.
    with run.step("verify"):
        _verify(run)


def _move_to_monolith(run: _Run) -> None:
    ctx = run.plan.context
    targets = [t.target_table for t in ctx.tables]
    with run.step("fence"):
        fence.fence(run.service_db, targets, ctx.name)
        run.undo_steps.append(("unfence service", lambda: fence.unfence(run.service_db,
                                                                         ctx.name)))
    with run.step("settle"):
        run.service_db.wait_for_writers(timeout=run.plan.wait_timeout)
    with run.step("drain"):
        _drain(run, "reverse")
    with run.step("flip"):
        _set_owner(run, "monolith")
        run.undo_steps.append(("owner service", lambda: _set_owner(run, "service")))
        _reset_id_sequences(run.monolith, ctx.moved_tables)
        fence.unfence(run.monolith, ctx.name)
        run.undo_steps.append(("fence monolith", lambda: fence.fence(
            run.monolith, ctx.moved_tables, ctx.name)))
    with run.step("verify"):
        _verify(run)


def _drain(run: _Run, direction: str, strict: bool = True) -> None:
    """Deliver one stream up to its head as of now, in-process.

    Strict (after the fence): fail unless every position up to that head is delivered.
    Events written later (derived facts the old owner still produces) are the running
    relay's business, not the cutover's.
    """
    plan, ctx = run.plan, run.plan.context
    if direction == "forward":
        source, table = run.monolith, ctx.outbox_table
        endpoint = EventsEndpoint(f"{plan.service_url}/internal/events/", plan.token,
                                  "monolith")
    else:
        source, table = run.service_db, ctx.service_outbox_table
        endpoint = EventsEndpoint(f"{plan.monolith_url}{ctx.reverse_path}", plan.token,
                                  ctx.name)
    outbox = OutboxTable(source, table)
    head = outbox.head()
    try:
        status = Relay(outbox, endpoint, RelayOptions(
            batch_size=1000, poll_interval=0.01, hole_grace=0.0, min_backoff=0.05,
            max_backoff=0.5, once=True, max_attempts_once=5, status_every=3600,
            stop_at=head, dead_letters=False)).run()
    finally:
        endpoint.close()
    run.report.drained[direction] = run.report.drained.get(direction, 0) + status.delivered
    if strict and status.position < head:
        raise CutoverFailed(f"the {direction} stream did not drain: delivered up to "
                            f"{status.position} of {head}; {status.last_error or status.state}")


def _verify(run: _Run) -> None:
    """Every moved aggregate's last sequence is equal on both sides (after both drains)."""
    ctx = run.plan.context
    kinds = sorted(ctx.aggregate_types)
    source = SequenceTable(run.monolith, ctx.sequence_table).every(kinds)
    remote = {(v["aggregate_type"], str(v["aggregate_id"])): int(v["sequence"])
              for v in run.service.versions(kinds)["versions"]}
    differ = sorted(f"{k[0]}:{k[1]} {remote.get(k, 0)}!={source[k]}" for k in source
                    if k in remote and remote[k] != source[k])
    # no counter on the source side is sequence 0 (rows loaded unpublished, e.g. seeded
    # orders, are backfilled at 0): only a service ahead of that differs
    differ += sorted(f"{k[0]}:{k[1]} {v}>0" for k, v in remote.items()
                     if k not in source and v > 0)
    if differ:
        raise CutoverFailed(f"{len(differ)} aggregates differ after draining: "
                            f"{', '.join(differ[:5])}; run `strangler reconcile`")


def _owner(run: _Run) -> str:
    data = run.service._call("GET", "/internal/ownership/",  # noqa: SLF001
                             params={"context": run.plan.context.name})
    return str(data["owner"])


def _set_owner(run: _Run, owner: str) -> None:
    run.service._call("POST", "/internal/ownership/", json={  # noqa: SLF001
        "context": run.plan.context.name, "owner": owner, "actor": run.plan.actor})


def _reset_id_sequences(database: Database, tables: tuple[str, ...]) -> None:
    """PostgreSQL: move id sequences past rows the reverse stream inserted with their ids."""
    if database.vendor != "postgresql":
        return
    for table in tables:
        name = check_identifier(table, "table")
        database.query(f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), "  # noqa: S608
                       f"GREATEST((SELECT max(id) FROM {name}), 1))")


def _check_routes(plan: CutoverPlan) -> None:
    """Fail before the fence, not after it, when a route to switch is not in the file."""
    if plan.routes is None:
        return
    try:
        names = {r.get("name") for r in tomllib.loads(plan.routes.read_text(encoding="utf-8"))
                 .get("routes", [])}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise CutoverFailed(f"{plan.routes}: cannot read the routes file ({exc})") from None
    missing = [r for r in plan.context.routes if r not in names]
    if missing:
        raise CutoverFailed(f"{plan.routes} has no route {', '.join(missing)}; name the "
                            "context's routes with --route (found: "
                            f"{', '.join(sorted(n for n in names if n))})")
    _route_editor()  # imported now, not inside the write pause (0.1-0.2 s on a busy machine)


def _switch_route(plan: CutoverPlan, mode: str) -> None:
    """Flip the context's routes with the toolkit's route editor (audited there too).

    The promotion gate is the cutover's own checks (fence, drain, verified sequences), given
    to the editor as a gate that allows and says so in the audit: the shadow evidence gate
    is for the earlier shadow and canary steps, and reading the diff store inside the write
    pause cost 0.2 s per route.
    """
    if plan.routes is None:
        return
    edit = _route_editor()
    for route in plan.context.routes:
        edit(plan.routes, route, mode, None, reason=f"cutover of {plan.context.name}",
             who=plan.actor, via="cutover", gate=_cutover_gate)


@dataclass(frozen=True)
class _Allowed:
    allowed: bool = True
    reason: str = "strangler cutover: fenced, drained, sequences verified"


def _cutover_gate(*args: Any) -> _Allowed:
    return _Allowed()


def _route_editor() -> Callable[..., Any]:
    """``apply_route_change``, wherever the proxy package keeps it (it is being reorganised)."""
    import importlib

    for module in ("strangler_proxy", "strangler_proxy.control.routes_edit",
                   "strangler_proxy.routes_edit"):
        try:
            found = getattr(importlib.import_module(module), "apply_route_change", None)
        except ImportError:
            continue
        if found is not None:
            return found  # type: ignore[no-any-return]
    raise CutoverFailed("cannot find the routes editor (strangler_proxy.apply_route_change)")


def _audit(plan: CutoverPlan, report: CutoverReport) -> None:
    if plan.audit_log is None:
        return
    plan.audit_log.parent.mkdir(parents=True, exist_ok=True)
    record = dict(report.to_json(), context=plan.context.name, actor=plan.actor,
                  at=datetime.now(UTC).isoformat(), routes=str(plan.routes or ""))
    with plan.audit_log.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, sort_keys=True) + "\n")
