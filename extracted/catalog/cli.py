"""``strangler catalog``: migrate and serve the extracted catalog service."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import click

SETTINGS = "extracted.catalog.settings"


class CatalogError(Exception):
    """A catalog command cannot run; printed as one line by ``strangler``."""

    strangler_user_error = True


def _django_env(data_dir: str | None, database_url: str | None) -> dict[str, str]:
    env = dict(os.environ, DJANGO_SETTINGS_MODULE=SETTINGS)
    if data_dir:
        env["STRANGLER_DATA_DIR"] = data_dir
    if database_url:
        env["CATALOG_DATABASE_URL"] = database_url
    return env


def _check_port_free(host: str, port: int) -> None:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            raise CatalogError(
                f"port {port} on {host} is in use: stop what runs there or pass --port N"
            ) from None


@click.group()
def catalog() -> None:
    """Run the extracted catalog service (Django + DRF, its own database).

    \b
    strangler catalog migrate             create or update its database
    strangler catalog serve --port 8001   serve it with gunicorn
    Settings: extracted.catalog.settings; CATALOG_DATABASE_URL overrides the SQLite file
    at $STRANGLER_DATA_DIR/catalog.sqlite3.
    """


_data_dir = click.option("--data-dir", default=None, help="Where the SQLite file lives "
                         "(default $STRANGLER_DATA_DIR or ./.demo).")
_db_url = click.option("--database-url", default=None, help="Database URL (overrides "
                       "CATALOG_DATABASE_URL and the SQLite default).")


@catalog.command()
@_data_dir
@_db_url
def migrate(data_dir: str | None, database_url: str | None) -> None:
    """Create or update the service's database schema."""
    os.environ.update(_django_env(data_dir, database_url))
    import django
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import call_command
    from django.db import OperationalError

    try:
        django.setup()
    except ImproperlyConfigured as exc:  # a bad database URL or data directory
        raise CatalogError(str(exc)) from None
    try:
        call_command("migrate", interactive=False, verbosity=0)
    except OperationalError as exc:
        reason = " ".join(str(exc).split())  # one line, whatever the driver printed
        raise CatalogError(f"cannot migrate the catalog database: {reason}; check "
                           "CATALOG_DATABASE_URL or --data-dir") from None
    click.echo("catalog database is up to date")


@catalog.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8001, show_default=True, type=click.IntRange(0, 65535))
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64))
@click.option("--migrate/--no-migrate", "run_migrate", default=True, show_default=True,
              help="Apply migrations before serving.")
@_data_dir
@_db_url
def serve(host: str, port: int, workers: int, run_migrate: bool, data_dir: str | None,
          database_url: str | None) -> None:
    """Serve the catalog API with gunicorn (a real server), until Ctrl-C."""
    if port:
        _check_port_free(host, port)
    if run_migrate:
        click.get_current_context().invoke(migrate, data_dir=data_dir, database_url=database_url)
    gunicorn = Path(sys.executable).with_name("gunicorn")
    argv = [str(gunicorn) if gunicorn.exists() else "gunicorn", "extracted.catalog.wsgi",
            "--bind", f"{host}:{port}", "--workers", str(workers), "--access-logfile", "-",
            "--graceful-timeout", "5"]
    os.execvpe(argv[0], argv, _django_env(data_dir, database_url))  # noqa: S606


@catalog.command()
@click.option("--broker-url", envvar="STRANGLER_BROKER_URL",
              default="amqp://guest:guest@127.0.0.1:5672/%2F", show_default=True,
              help="AMQP broker (env STRANGLER_BROKER_URL).")
@click.option("--stream", default="monolith", show_default=True,
              help="The stream, as the relay names it (--stream).")
@click.option("--partitions", default=4, show_default=True, type=click.IntRange(1, 256),
              help="As the relay's --partitions.")
@click.option("--queue-prefix", default="strangler", show_default=True,
              help="As the relay's --queue-prefix.")
@click.option("--prefetch", default=8, show_default=True, type=click.IntRange(1, 1000),
              help="Messages the broker may send ahead of the acks.")
@click.option("--max-backoff", default=5.0, show_default=True, type=click.FloatRange(0.01))
@click.option("--idle-exit", default=None, type=click.FloatRange(0.1),
              help="Stop after this many seconds without a message (for scripts).")
@click.option("--json", "as_json", is_flag=True, help="Print the final counts as JSON.")
@_data_dir
@_db_url
def consume(broker_url: str, stream: str, partitions: int, queue_prefix: str, prefetch: int,
            max_backoff: float, idle_exit: float | None, as_json: bool, data_dir: str | None,
            database_url: str | None) -> None:
    """Apply the relay's events from RabbitMQ (`strangler relay --transport amqp`).

    \b
    The messages received together are applied in one transaction, acked after commit; an
    aggregate's events arrive in order (one active consumer per partition queue, however
    many of these run). Stop with Ctrl-C
    or SIGTERM; kill it any way you like, unacked messages come again and are recognised.
    Dead letters, lag and pruning work as over HTTP (`strangler relay dead-letters`,
    `relay --check`, `outbox prune`, against the service's /internal/events/).
    """
    import json
    import signal

    os.environ.update(_django_env(data_dir, database_url))
    import django
    from django.core.exceptions import ImproperlyConfigured

    try:
        django.setup()
    except ImproperlyConfigured as exc:
        raise CatalogError(str(exc)) from None
    from extracted.catalog.consume import apply_messages
    from extracted.sync import AmqpConsumer, Broker, ConsumerOptions

    broker = Broker(broker_url, stream, partitions, queue_prefix)
    consumer = AmqpConsumer(broker, apply_messages, ConsumerOptions(
        prefetch=prefetch, max_backoff=max_backoff, idle_exit=idle_exit))

    def _stop(signum: int, frame: object) -> None:
        consumer.stopping = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    click.echo(f"consume: {broker.queue(0)} .. p{partitions - 1} -> catalog", err=True)
    status = consumer.run().to_json()
    if as_json:
        click.echo(json.dumps(status, sort_keys=True))
    else:
        click.echo(f"stream {stream}: {status['messages']} messages, {status['events']} events "
                   f"(applied {status['applied']}, duplicates {status['duplicates']}, stale "
                   f"{status['stale']}, dead letters {status['dead_letters']}), failures "
                   f"{status['failures']}")
