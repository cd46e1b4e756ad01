"""``strangler relay``, ``strangler backfill`` and ``strangler reconcile``."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from extracted.sync.database import Database
from extracted.sync.delivery import EventsEndpoint
from extracted.sync.errors import BadEvent, DeliveryFailed
from extracted.sync.outbox import OutboxTable, SequenceTable
from extracted.sync.relay import Relay, RelayOptions, check_lag
from extracted.sync.service import ServiceInternals

DEFAULT_TOKEN = "strangler-demo-sync-token"
F = TypeVar("F", bound=Callable[..., Any])


def _source_db() -> Callable[[F], F]:
    return click.option(
        "--source-db", envvar="STRANGLER_SOURCE_DB", required=True,
        help="URL of the producer's database, e.g. sqlite:///.demo/monolith.sqlite3 or "
             "postgresql://postgres@127.0.0.1/shop (env STRANGLER_SOURCE_DB).",
    )


def _token() -> Callable[[F], F]:
    return click.option("--token", envvar="CATALOG_SYNC_TOKEN", default=DEFAULT_TOKEN,
                        show_default="the demo token",
                        help="Bearer token of the internal endpoints (env CATALOG_SYNC_TOKEN).")


def _context() -> Callable[[F], F]:
    return click.option("--context", default="catalog", show_default=True,
                        help="Which context (a ContextSpec in extracted/sync/spec.py: "
                             "catalog, ordering).")


def _spec(name: str) -> Any:
    """The ContextSpec called ``name``; an unknown name is one line listing the known."""
    from extracted.sync.spec import context_for

    try:
        return context_for(name)
    except BadEvent as exc:
        raise click.BadParameter(str(exc), param_hint="--context") from None


def _outbox_table() -> Callable[[F], F]:
    return click.option("--outbox-table", default="outbox_outboxevent", show_default=True,
                        help="The producer's outbox table (the service's is "
                             "catalog_outboxevent).")


@click.group(invoke_without_command=True)
@click.option("--source-db", envvar="STRANGLER_SOURCE_DB", default=None,
              help="URL of the producer's database, e.g. sqlite:///.demo/monolith.sqlite3 or "
                   "postgresql://postgres@127.0.0.1/shop (env STRANGLER_SOURCE_DB).")
@_outbox_table()
@click.option("--target", default="http://127.0.0.1:8001/internal/events/", show_default=True,
              help="The consumer's apply endpoint (with --transport amqp: asked where to "
                   "start when the broker has no cursor yet, and by --check/dead-letters).")
@_token()
@click.option("--stream", default="monolith", show_default=True,
              help="Name of this stream at the consumer (its position is kept per stream).")
@click.option("--transport", type=click.Choice(["http", "amqp"]), default="http",
              envvar="STRANGLER_SYNC_TRANSPORT", show_default=True,
              help="http: POST batches to --target. amqp: publish them to RabbitMQ with "
                   "confirms; `strangler catalog consume` applies them (env "
                   "STRANGLER_SYNC_TRANSPORT). --check and dead-letters always ask --target.")
@click.option("--broker-url", envvar="STRANGLER_BROKER_URL", default=None,
              help="AMQP broker (env STRANGLER_BROKER_URL; default "
                   "amqp://guest:guest@127.0.0.1:5672/%2F).")
@click.option("--partitions", default=4, show_default=True, type=click.IntRange(1, 256),
              help="AMQP partition queues (aggregate order is kept within one); the consumer "
                   "must use the same number.")
@click.option("--queue-prefix", default="strangler", show_default=True,
              help="AMQP queue names: PREFIX.STREAM.p0 ...")
@click.option("--batch-size", default=200, show_default=True, type=click.IntRange(1, 5000))
@click.option("--poll-interval", default=0.2, show_default=True, type=click.FloatRange(0.01))
@click.option("--hole-grace", default=5.0, show_default=True, type=click.FloatRange(0),
              help="SQLite: seconds before a missing outbox id is taken for a deleted row. "
                   "PostgreSQL waits for the database's write horizon instead (no timer).")
@click.option("--max-backoff", default=5.0, show_default=True, type=click.FloatRange(0.01))
@click.option("--once", is_flag=True, help="Deliver what is pending, print the status, exit "
              "(non-zero when the consumer could not be reached).")
@click.option("--check", is_flag=True, help="Deliver nothing: print how far the consumer is "
              "behind (exit 1 when it is).")
@click.option("--status-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Keep the status JSON (lag, counters) in this file, rewritten atomically.")
@click.option("--metrics-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Keep the status as Prometheus metrics in this file (textfile collector).")
@click.option("--json", "as_json", is_flag=True, help="Print the final status as JSON.")
@click.pass_context
def relay(ctx: click.Context, source_db: str | None, outbox_table: str, target: str, token: str,
          stream: str, transport: str, broker_url: str | None, partitions: int,
          queue_prefix: str, batch_size: int, poll_interval: float, hole_grace: float,
          max_backoff: float, once: bool, check: bool, status_file: Path | None,
          metrics_file: Path | None, as_json: bool) -> None:
    """Deliver outbox events to a service, in order, at least once.

    \b
    Reads the producer's outbox table through --source-db, resumes from the position the
    consumer reports, delivers batches to --target and backs off while it is down. Stop
    with Ctrl-C (or SIGTERM); kill it any way you like, it resumes without loss.
    Lag: `strangler relay --check --json` (delivers nothing), --once, or --status-file.
    An event the consumer cannot apply becomes a dead letter there and holds only its
    aggregate: `strangler relay dead-letters list|retry|skip`.
    """
    ctx.obj = {"target": target, "token": token, "stream": stream}
    if ctx.invoked_subcommand is not None:
        return
    if not source_db:
        raise click.UsageError("Missing option '--source-db' (or STRANGLER_SOURCE_DB).")
    options = RelayOptions(batch_size=batch_size, poll_interval=poll_interval,
                           hole_grace=hole_grace, max_backoff=max_backoff, once=once,
                           status_file=status_file, metrics_file=metrics_file)
    database = Database(source_db)
    endpoint = EventsEndpoint(target, token, stream)
    if check:
        try:
            lag = check_lag(OutboxTable(database, outbox_table), endpoint)
        finally:
            endpoint.close()
            database.close()
        _print_status(lag.to_json(), as_json)
        raise SystemExit(1 if lag.lag_events or lag.stuck_aggregates else 0)
    consumer = endpoint
    if transport == "amqp":
        from extracted.sync.amqp import DEFAULT_BROKER_URL, AmqpEndpoint, Broker, redact_url

        broker = Broker(broker_url or DEFAULT_BROKER_URL, stream, partitions, queue_prefix)
        # a broker with no cursor yet starts where the consumer is (--target), not at 0
        endpoint = AmqpEndpoint(broker, start=consumer.position)  # type: ignore[assignment]
        target = f"{redact_url(broker.url)} ({broker.queue(0)} ...)"
    runner = Relay(OutboxTable(database, outbox_table), endpoint, options)

    def _stop(signum: int, frame: Any) -> None:
        runner.stopping = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    if not once:
        click.echo(f"relay: {outbox_table} -> {target} (stream {stream})", err=True)
    try:
        status = runner.run()
    finally:
        endpoint.close()
        if consumer is not endpoint:
            consumer.close()
        database.close()
    _print_status(status.to_json(), as_json, broker=transport == "amqp")
    if once and (status.lag_events or status.state == "backing_off"):
        raise SystemExit(1)


def _print_status(status: dict[str, Any], as_json: bool, broker: bool = False) -> None:
    """The relay's status line; ``broker``: delivered means confirmed by RabbitMQ, and what
    was applied only the consumers know (their ``consume --json``), so no 0 is shown for it."""
    if as_json:
        click.echo(json.dumps(status | {"transport": "amqp"} if broker else status,
                              sort_keys=True))
        return
    outcome = ("confirmed by the broker; applied, duplicates and stale: the consumers' "
               "`consume --json`" if broker else
               f"applied {status['applied']}, duplicates {status['duplicates']}, stale "
               f"{status['stale']}")
    click.echo(
        f"stream {status['stream']}: {status['state']}, position {status['position']} of "
        f"{status['head']}, lag {status['lag_events']} events / {status['lag_seconds']} s; "
        f"delivered {status['delivered']} ({outcome}), failures {status['failures']}"
        + (f"; last error: {status['last_error']}" if status["last_error"] else "")
        + (f"; {status['dead_letters']} dead letters hold "
           f"{', '.join(status['stuck_aggregates'][:10])}" if status.get("stuck_aggregates")
           else "")
    )


@relay.group("dead-letters")
def dead_letters() -> None:
    """Events the consumer could not apply: list, retry or skip them (audited).

    \b
    strangler relay dead-letters list                 open ones, with their reason
    strangler relay dead-letters retry [ID ...]       apply held aggregates in order
    strangler relay dead-letters skip ID [ID ...]     give up on some (say why in --actor)
    The consumer is the relay's --target (e.g. strangler relay --target URL dead-letters …).
    """


def _letters_endpoint() -> EventsEndpoint:
    params = click.get_current_context().find_object(dict) or {}
    return EventsEndpoint(params["target"], params["token"], params["stream"])


@dead_letters.command("list")
@click.option("--all", "show_all", is_flag=True, help="Also the retried, skipped, superseded.")
@click.option("--json", "as_json", is_flag=True)
def dead_letters_list(show_all: bool, as_json: bool) -> None:
    """List dead letters with their reason (exit 1 when any is open)."""
    endpoint = _letters_endpoint()
    try:
        letters = endpoint.dead_letters("all" if show_all else "open")
    finally:
        endpoint.close()
    if letters is None:
        raise DeliveryFailed(f"{endpoint.dead_letters_url}: this consumer keeps no dead letters")
    if as_json:
        click.echo(json.dumps(letters, sort_keys=True, default=str))
    else:
        for x in letters:
            click.echo(f"{x['id']:>6} {x['status']:<10} {x['aggregate_type']}:"
                       f"{x['aggregate_id']} seq {x['sequence']} pos {x['position']}: "
                       f"{x['reason']}")
        click.echo(f"{sum(x['status'] == 'open' for x in letters)} open")
    if any(x["status"] == "open" for x in letters):
        raise SystemExit(1)


def _actor() -> Callable[[F], F]:
    return click.option("--actor", default=lambda: os.environ.get("USER", "unknown"),
                        show_default="$USER", help="Who does it (kept in the audit).")


@dead_letters.command("retry")
@click.argument("ids", nargs=-1, type=int)
@_actor()
def dead_letters_retry(ids: tuple[int, ...], actor: str) -> None:
    """Apply the held aggregates of IDS (every open letter without IDS), in order."""
    endpoint = _letters_endpoint()
    try:
        result = endpoint.act_on_dead_letters("retry", ids, actor)
    finally:
        endpoint.close()
    click.echo(json.dumps(result, sort_keys=True))
    if result.get("still_open"):
        raise SystemExit(1)


@dead_letters.command("skip")
@click.argument("ids", nargs=-1, type=int, required=True)
@_actor()
def dead_letters_skip(ids: tuple[int, ...], actor: str) -> None:
    """Give up on dead letters IDS (their aggregate flows again; repair it with reconcile)."""
    endpoint = _letters_endpoint()
    try:
        result = endpoint.act_on_dead_letters("skip", ids, actor)
    finally:
        endpoint.close()
    click.echo(json.dumps(result, sort_keys=True))


@click.command()
@_source_db()
@_outbox_table()
@click.option("--service-url", default="http://127.0.0.1:8001", show_default=True)
@_token()
@click.option("--stream", default="monolith", show_default=True)
@click.option("--batch-size", default=500, show_default=True, type=click.IntRange(1, 10000))
@click.option("--hole-grace", default=None, type=click.FloatRange(0), hidden=True,
              help="Ignored (kept for old scripts): the wait comes from the database.")
@click.option("--wait-timeout", default=600.0, show_default=True, type=click.FloatRange(0),
              help="Give up when a write transaction older than the copy stays open this long.")
@_context()
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def backfill(source_db: str, outbox_table: str, service_url: str, token: str, stream: str,
             batch_size: int, hole_grace: float | None, wait_timeout: float, context: str,
             as_json: bool) -> None:
    """Copy a context's existing rows to its service, then hand over to the relay.

    \b
    Records the outbox head first, copies every table in batches (each row with its last
    outbox sequence), then sets the service's stream position to that head: the relay
    delivers the rest, and anything the copy already had is skipped, never applied twice.
    Safe to re-run; safe while the monolith takes writes.
    """
    from extracted.sync.backfill import backfill as run_backfill

    database = Database(source_db)
    service = ServiceInternals(service_url, token)
    seen: dict[str, int] = {}

    def _progress(kind: str, rows: int) -> None:
        seen[kind] = seen.get(kind, 0) + rows
        if not as_json:
            click.echo(f"\r{kind}: {seen[kind]} rows", nl=False, err=True)

    try:
        report = run_backfill(database, OutboxTable(database, outbox_table), service,
                              stream=stream, batch_size=batch_size, context=_spec(context),
                              wait_timeout=wait_timeout, on_batch=_progress)
    finally:
        service.close()
        database.close()
    data = {"high_water": report.high_water, "position": report.position,
            "copied": report.copied, "skipped": report.skipped, "deleted": report.deleted,
            "seconds": report.seconds, "waited": report.waited,
            "total_copied": report.total_copied}
    if as_json:
        click.echo(json.dumps(data, sort_keys=True))
        return
    click.echo("", err=True)
    for kind, count in report.copied.items():
        click.echo(f"{kind:<26} copied {count:>7}  skipped {report.skipped[kind]:>6}  "
                   f"deleted {report.deleted[kind]:>5}")
    click.echo(f"copied {report.total_copied} rows in {report.seconds} s; stream {stream} "
               f"starts after outbox position {report.high_water}")


@click.command()
@_source_db()
@_outbox_table()
@click.option("--sequence-table", default="outbox_aggregatesequence", show_default=True,
              help="The producer's last sequence per aggregate (the service's is "
                   "<context>_aggregateversion).")
@click.option("--service-url", default="http://127.0.0.1:8001", show_default=True)
@_token()
@click.option("--range-size", default=1000, show_default=True, type=click.IntRange(1))
@click.option("--versions/--no-versions", default=True, show_default=True,
              help="Also compare each aggregate's last sequence (off after cutover).")
@click.option("--max-keys", default=20, show_default=True, type=click.IntRange(0),
              help="How many differing keys to print per table.")
@click.option("--repair", is_flag=True, help="Write one repair event per differing key into the "
              "producer's outbox (the relay delivers them in order). Without it: a dry run "
              "that lists the actions.")
@_context()
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def reconcile(source_db: str, outbox_table: str, sequence_table: str, service_url: str,
              token: str, range_size: int, versions: bool, max_keys: int, repair: bool,
              context: str, as_json: bool) -> None:
    """Compare a context's rows in the monolith and in its service; exit 1 on divergence.

    \b
    Counts and per-range digests first, then the differing keys (missing in the service,
    extra in the service, different) and the action that would repair each (copy, update,
    delete, re-derive). --repair carries those actions as events. Exit status 0 when equal
    (or repaired), 1 when not.
    """
    from extracted.sync.reconcile import reconcile as run_reconcile
    from extracted.sync.repair import apply_repairs, plan_repairs
    spec = _spec(context)
    database = Database(source_db)
    service = ServiceInternals(service_url, token)
    written = 0
    try:
        sequences = SequenceTable(database, sequence_table) if versions else None
        report = run_reconcile(database, service, range_size=range_size, sequences=sequences,
                               context=spec)
        actions = plan_repairs(report, (s.aggregate_type for s in spec.signals))
        if repair and actions:
            owner = service._call("GET", "/internal/ownership/",  # noqa: SLF001
                                  params={"context": spec.name})["owner"]
            if owner != "monolith":
                raise DeliveryFailed(f"{spec.name} is owned by the service since cutover: "
                                     "repair from the owner (this repairs the monolith's "
                                     "follower), or undo the cutover first")
            remote = {(v["aggregate_type"], str(v["aggregate_id"])): int(v["sequence"])
                      for v in service.versions()["versions"]}
            written = apply_repairs(database, actions, remote, context=spec)
    finally:
        service.close()
        database.close()
    if as_json:
        click.echo(json.dumps(dict(report.to_json(), actions=[a.to_json() for a in actions],
                                   repaired=written), sort_keys=True))
    else:
        _print_reconcile(report, max_keys)
        for action in actions[: max_keys or len(actions)]:
            click.echo(f"  {'' if repair else 'would '}{action.action:<9} "
                       f"{action.aggregate_type}:{action.key} ({action.reason})")
        if repair:
            click.echo(f"{written} repair events written to {outbox_table}; the relay delivers "
                       "them; run reconcile again once it has")
        elif actions:
            click.echo(f"dry run: {len(actions)} actions; --repair writes them as events")
    if not report.ok and not (repair and written == len(actions)):
        raise SystemExit(1)


def _print_reconcile(report: Any, max_keys: int) -> None:
    click.echo(f"{'aggregate type':<26}{'source':>8}{'service':>9}{'missing':>9}{'extra':>7}"
               f"{'differ':>8}")
    for t in report.tables:
        click.echo(f"{t.aggregate_type:<26}{t.source_count:>8}{t.service_count:>9}"
                   f"{len(t.missing):>9}{len(t.extra):>7}{len(t.different):>8}")
        for label, keys in (("missing", t.missing), ("extra", t.extra),
                            ("different", t.different)):
            if keys and max_keys:
                click.echo(f"    {label}: {', '.join(map(str, keys[:max_keys]))}"
                           + (" …" if len(keys) > max_keys else ""))
    if report.versions_compared:
        click.echo(f"versions: {report.versions_compared} aggregates compared, "
                   f"{len(report.versions_behind)} behind, {len(report.versions_ahead)} ahead")
        for line in (report.versions_behind + report.versions_ahead)[:max_keys]:
            click.echo(f"    {line}")
    click.echo("in step" if report.ok else "DIVERGED")




@click.command()
@click.argument("context", default="catalog")
@click.option("--undo", is_flag=True, help="Move ownership back to the monolith, replaying the "
              "service's changes into the monolith's tables first.")
@click.option("--source-db", envvar="STRANGLER_SOURCE_DB", required=True,
              help="The monolith's database URL (env STRANGLER_SOURCE_DB).")
@click.option("--service-db", envvar="CATALOG_DATABASE_URL", required=True,
              help="The service's database URL (env CATALOG_DATABASE_URL).")
@click.option("--service-url", default="http://127.0.0.1:8001", show_default=True)
@click.option("--monolith-url", default="http://127.0.0.1:8000", show_default=True,
              help="Where the monolith takes the reverse stream (the context spec's path: "
              "/internal/catalog-events/, /internal/saga-events/ for ordering).")
@_token()
@click.option("--routes", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The routes file whose CONTEXT routes are switched last (skipped without).")
@click.option("--route", "route_names", multiple=True, metavar="NAME",
              help="A route of the context in that file (repeat it); default: the context "
                   "spec's routes (catalog: catalog, catalog-categories, catalog-brands; "
                   "ordering: ordering, ordering-cart, ordering-checkout, ordering-coupons, "
                   "order-pay).")
@click.option("--audit-log", type=click.Path(dir_okay=False, path_type=Path),
              default=Path(".demo/cutover-audit.jsonl"), show_default=True)
@click.option("--wait-timeout", default=60.0, show_default=True, type=click.FloatRange(0),
              help="Give up (and roll back) when a write transaction outlives the fence so long.")
@_actor()
@click.option("--json", "as_json", is_flag=True)
def cutover(context: str, undo: bool, source_db: str, service_db: str, service_url: str,
            monolith_url: str, token: str, routes: Path | None, route_names: tuple[str, ...],
            audit_log: Path, wait_timeout: float, actor: str, as_json: bool) -> None:
    """Move CONTEXT's tables to the service (or back with --undo): fenced, audited, undoable.

    \b
    drain -> fence the monolith's writes in its database -> settle -> drain -> flip owner ->
    reverse stream -> verify every aggregate's sequence -> switch the route.
    The write pause (fence to route switch) is printed. A failing step rolls back what was
    done: the old owner stays the owner and writable. Keep the relays running in both
    directions (`strangler relay`, docs/data-sync.md); this drains them to the last event.
    """
    from extracted.sync import cutover as moves
    from extracted.sync.spec import context_for

    spec = context_for(context)
    if route_names:
        spec = dataclasses.replace(spec, routes=route_names)
    plan = moves.CutoverPlan(spec, source_db, service_db, service_url.rstrip("/"),
                             monolith_url.rstrip("/"), token, routes, actor, audit_log,
                             wait_timeout)
    report = (moves.undo if undo else moves.cutover)(plan)
    if as_json:
        click.echo(json.dumps(report.to_json(), sort_keys=True))
    else:
        steps = ", ".join(f"{k} {v:.3f}s" for k, v in report.steps.items())
        click.echo(f"{report.direction} of {context}: {'done' if report.ok else 'FAILED'}; "
                   f"write pause {report.pause:.3f} s ({steps})")
        if report.error:
            click.echo(f"error: {report.error}; rolled back: "
                       f"{', '.join(report.rolled_back) or 'nothing'}", err=True)
    if not report.ok:
        raise SystemExit(1)


@click.group()
def outbox() -> None:
    """Look after a producer's outbox table."""


@outbox.command("prune")
@_source_db()
@_outbox_table()
@click.option("--target", "targets", multiple=True, required=True, metavar="URL[#STREAM]",
              help="Every consumer's events endpoint (repeat it), with its stream after #, "
                   "e.g. http://127.0.0.1:8001/internal/events/#monolith.")
@_token()
@click.option("--keep", default=1000, show_default=True, type=click.IntRange(0),
              help="Keep this many acknowledged events as a margin.")
@click.option("--dry-run", is_flag=True, help="Say what would go, delete nothing.")
def outbox_prune(source_db: str, outbox_table: str, targets: tuple[str, ...], token: str,
                 keep: int, dry_run: bool) -> None:
    """Delete events every consumer has acknowledged (never the sequence table).

    The bound is the lowest position any --target reports, minus --keep. Backfill and
    reconcile take sequences from the sequence table, so recovering a lost consumer
    database works after a prune.
    """
    positions = []
    for target in targets:
        url, _, stream = target.partition("#")
        endpoint = EventsEndpoint(url, token, stream or "monolith")
        try:
            positions.append(endpoint.position())
        finally:
            endpoint.close()
    bound = max(0, min(positions) - keep)
    database = Database(source_db)
    table = OutboxTable(database, outbox_table).table
    try:
        count = int(database.query(f"SELECT count(*) AS n FROM {table} WHERE id <= ?",  # noqa: S608
                                   [bound])[0]["n"])
        if not dry_run and count:
            database.query(f"DELETE FROM {table} WHERE id <= ?", [bound])  # noqa: S608
    finally:
        database.close()
    verb = "would delete" if dry_run else "deleted"
    click.echo(f"{verb} {count} events at or below position {bound} (consumers at "
               f"{', '.join(map(str, positions))}, margin {keep})")
