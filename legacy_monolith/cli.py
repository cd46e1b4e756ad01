"""``strangler monolith``: migrate, seed, serve, drive and describe the demo shop.

Django is imported inside each command (the ``strangler`` group stays Django-free).
"""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

import click

from legacy_monolith.errors import MonolithError


def _setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "legacy_monolith.settings")
    import django
    from django.core.exceptions import ImproperlyConfigured

    try:
        django.setup()
    except ImproperlyConfigured as exc:  # e.g. a bad DATABASE_URL: one line, not a traceback
        raise MonolithError(str(exc)) from exc


def _database_label() -> str:
    from django.db import connection

    settings = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"SQLite file {settings['NAME']}"
    return f"{connection.vendor} database {settings.get('NAME')} at " \
           f"{settings.get('HOST') or 'localhost'}:{settings.get('PORT') or 5432}"


def check_database(require_migrated: bool) -> None:
    """Raise MonolithError when the database is unreachable or (optionally) not migrated."""
    from django.db import DatabaseError, connection
    from django.db.migrations.executor import MigrationExecutor

    try:
        connection.ensure_connection()
        executor = MigrationExecutor(connection)
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except DatabaseError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MonolithError(
            f"cannot reach the {_database_label()}: {first}; start the database or fix "
            "DATABASE_URL (unset it to use SQLite)"
        ) from exc
    if require_migrated and plan:
        raise MonolithError(
            f"the {_database_label()} has {len(plan)} unapplied migrations; "
            "run `strangler monolith migrate` first"
        )


class OneLineErrors(click.Group):
    """Turn click's three-line usage errors into one MonolithError line (exit 2)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            sub = exc.ctx.info_name if exc.ctx and exc.ctx.command is not self else ""
            hint = " ".join(w for w in ("strangler monolith", sub, "--help") if w)
            raise MonolithError(f"{exc.format_message()} (see `{hint}`)") from exc


@click.group(cls=OneLineErrors)
def monolith() -> None:
    """Run, seed and drive the demo monolith (Django + DRF online shop).

    \b
    SQLite in $STRANGLER_DATA_DIR (default ./.demo) unless DATABASE_URL is set.
    Query capture: STRANGLER_QUERY_LOG=queries.jsonl (see docs/query-log-format.md).
    """


@monolith.command()
def migrate() -> None:
    """Create or update the database schema."""
    _setup_django()
    from django.core.management import call_command

    check_database(require_migrated=False)
    call_command("migrate", interactive=False, verbosity=0)
    click.echo(f"migrated the {_database_label()}")


@monolith.command()
@click.option("--size", type=click.Choice(["tiny", "small", "large"]), default="small",
              show_default=True, help="small: ~200 products; large: 10k products, 50k orders.")
@click.option("--seed", "seed_value", type=int, default=42, show_default=True,
              help="Random seed; the same seed gives the same data.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def seed(size: str, seed_value: int, as_json: bool) -> None:
    """Empty the shop and fill it with deterministic demo data."""
    _setup_django()
    from legacy_monolith.seed import SIZES
    from legacy_monolith.seed import seed as run_seed

    check_database(require_migrated=True)
    progress = (lambda _: None) if as_json else (lambda name: click.echo(f"  seeding {name}"))
    report = run_seed(SIZES[size], seed_value, progress)
    if as_json:
        click.echo(json.dumps({"size": report.size, "seed": report.seed,
                               "counts": report.counts, "timings": report.timings,
                               "seconds": round(report.total_seconds, 3),
                               "tokens": report.tokens}, indent=2))
        return
    counts = ", ".join(f"{v} {k}" for k, v in report.counts.items())
    click.echo(f"seeded {size} (seed {seed_value}) in {report.total_seconds:.1f} s: {counts}")
    for user, token in report.tokens.items():
        click.echo(f"  {user:<6} password {user}-password   token {token}")


def check_query_log() -> None:
    """Raise MonolithError when query capture is on but its file cannot be appended to.

    Checked before serving: found later, it would fail every request the shop answers.
    """
    from legacy_monolith.query_log import query_log_path

    path = query_log_path()
    if not path:
        return
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644))
    except OSError as exc:
        raise MonolithError(
            f"STRANGLER_QUERY_LOG={path}: cannot append to it ({exc.strerror}); point it at a "
            "writable file or unset it to switch query capture off"
        ) from None


def port_in_use(host: str, port: int) -> bool:
    """True when something already listens on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def gunicorn_argv(host: str, port: int, workers: int, threads: int) -> list[str]:
    """The gunicorn command line that serves the shop."""
    return [
        sys.executable, "-m", "gunicorn", "legacy_monolith.wsgi:application",
        "--bind", f"{host}:{port}", "--workers", str(workers), "--threads", str(threads),
        "--graceful-timeout", "5", "--timeout", "60", "--log-level", "warning",
    ]


@monolith.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8000, show_default=True)
@click.option("--workers", type=int, default=2, show_default=True)
@click.option("--threads", type=int, default=1, show_default=True)
def serve(host: str, port: int, workers: int, threads: int) -> None:
    """Serve the shop with gunicorn (a real WSGI server) until interrupted."""
    if not 1 <= workers <= 32:
        raise MonolithError(f"--workers must be between 1 and 32 (got {workers})")
    if not 0 < port < 65536:
        raise MonolithError(f"--port must be between 1 and 65535 (got {port})")
    if port_in_use(host, port):
        raise MonolithError(f"port {port} on {host} is in use; stop what listens there or "
                            "pass --port with a free port")
    _setup_django()
    check_database(require_migrated=True)
    check_query_log()
    click.echo(f"serving the shop on http://{host}:{port}/api/ ({workers} workers)", err=True)
    sys.stdout.flush()
    argv = gunicorn_argv(host, port, workers, threads)
    os.execv(argv[0], argv)  # noqa: S606 - replace this process: signals reach gunicorn


@monolith.command()
@click.option("--base-url", required=True, help="Where the shop (or the proxy) listens.")
@click.option("--requests", "n_requests", type=int, default=200, show_default=True)
@click.option("--duration", type=float, default=60.0, show_default=True,
              help="Stop after this many seconds even if requests remain.")
@click.option("--seed", "seed_value", type=int, default=42, show_default=True)
@click.option("--concurrency", type=int, default=2, show_default=True)
@click.option("--visitor-header", default=None, metavar="NAME",
              help="Say who sends each request in this header (the user, or one of 100 "
                   "anonymous visitors per worker), for a canary sticky by it.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def workload(base_url: str, n_requests: int, duration: float, seed_value: int,
             concurrency: int, visitor_header: str | None, as_json: bool) -> None:
    """Drive the shop like shoppers and staff: browse, search, buy, ship, review, moderate."""
    from legacy_monolith.workload import WorkloadSpec, format_summary, run_workload

    spec = WorkloadSpec(base_url.rstrip("/"), n_requests, duration, seed_value, concurrency,
                        visitor_header=visitor_header)
    summary: dict[str, Any] = run_workload(spec).summary()
    click.echo(json.dumps(summary, indent=2) if as_json else format_summary(summary))


@monolith.command()
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="File to write; .json for JSON, anything else for YAML.")
def schema(out: Path) -> None:
    """Write the OpenAPI schema served at /api/schema/ to a file."""
    _setup_django()
    from legacy_monolith.schema import write_schema

    size = write_schema(out)
    click.echo(f"wrote {out} ({size} bytes)")
