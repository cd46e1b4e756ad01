"""``strangler <service> migrate|serve``: one command group per service, written once."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


class ServiceError(Exception):
    """A service command cannot run; printed as one line by ``strangler``."""

    strangler_user_error = True


def _check_port_free(host: str, port: int) -> None:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            raise ServiceError(
                f"port {port} on {host} is in use: stop what runs there or pass --port N"
            ) from None


def setup_django(name: str, data_dir: str | None, database_url: str | None) -> None:
    """Configure Django for ``extracted.<name>`` in this process (a bad URL is one line)."""
    os.environ["DJANGO_SETTINGS_MODULE"] = f"extracted.{name}.settings"
    if data_dir:
        os.environ["STRANGLER_DATA_DIR"] = data_dir
    if database_url:
        os.environ[f"{name.upper()}_DATABASE_URL"] = database_url
    import django
    from django.core.exceptions import ImproperlyConfigured

    try:
        django.setup()
    except ImproperlyConfigured as exc:  # a bad database URL or data directory
        raise ServiceError(str(exc)) from None


data_dir_option = click.option("--data-dir", default=None, help="Where the SQLite file "
                               "lives (default $STRANGLER_DATA_DIR or ./.demo).")


def db_url_option(name: str) -> Callable[[F], F]:
    """``--database-url``, overriding ``<NAME>_DATABASE_URL``."""
    return click.option("--database-url", default=None, help="Database URL (overrides "
                        f"{name.upper()}_DATABASE_URL and the SQLite default).")


def service_group(name: str, default_port: int, summary: str) -> click.Group:
    """The ``migrate`` and ``serve`` commands of ``extracted.<name>`` (settings, wsgi)."""
    settings_module, prefix = f"extracted.{name}.settings", name.upper()
    variable = f"{prefix}_DATABASE_URL"

    def django_env(data_dir: str | None, database_url: str | None) -> dict[str, str]:
        env = dict(os.environ, DJANGO_SETTINGS_MODULE=settings_module)
        if data_dir:
            env["STRANGLER_DATA_DIR"] = data_dir
        if database_url:
            env[variable] = database_url
        return env

    @click.group(name=name, help=f"""{summary}

    \b
    strangler {name} migrate             create or update its database
    strangler {name} serve --port {default_port}   serve it with gunicorn
    Settings: {settings_module}; {variable} overrides the SQLite file
    at $STRANGLER_DATA_DIR/{name}.sqlite3.
    """)
    def group() -> None:
        pass

    @group.command()
    @data_dir_option
    @db_url_option(name)
    def migrate(data_dir: str | None, database_url: str | None) -> None:
        """Create or update the service's database schema."""
        setup_django(name, data_dir, database_url)
        from django.core.management import call_command
        from django.db import OperationalError

        try:
            call_command("migrate", interactive=False, verbosity=0)
        except OperationalError as exc:
            reason = " ".join(str(exc).split())  # one line, whatever the driver printed
            raise ServiceError(f"cannot migrate the {name} database: {reason}; check "
                               f"{variable} or --data-dir") from None
        click.echo(f"{name} database is up to date")

    @group.command()
    @click.option("--host", default="127.0.0.1", show_default=True)
    @click.option("--port", default=default_port, show_default=True,
                  type=click.IntRange(0, 65535))
    @click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64))
    @click.option("--migrate/--no-migrate", "run_migrate", default=True, show_default=True,
                  help="Apply migrations before serving.")
    @data_dir_option
    @db_url_option(name)
    def serve(host: str, port: int, workers: int, run_migrate: bool, data_dir: str | None,
              database_url: str | None) -> None:
        """Serve the API with gunicorn (a real server), until Ctrl-C."""
        if port:
            _check_port_free(host, port)
        if run_migrate:
            click.get_current_context().invoke(migrate, data_dir=data_dir,
                                               database_url=database_url)
        gunicorn = Path(sys.executable).with_name("gunicorn")
        argv = [str(gunicorn) if gunicorn.exists() else "gunicorn", f"extracted.{name}.wsgi",
                "--bind", f"{host}:{port}", "--workers", str(workers), "--access-logfile", "-",
                "--graceful-timeout", "5"]
        os.execvpe(argv[0], argv, django_env(data_dir, database_url))  # noqa: S606

    return group
