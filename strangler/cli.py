"""The one ``strangler`` command: a thin click group that loads each subcommand lazily.

Each job of the toolkit owns its subcommands in its own package; this table is the one
place a reader sees them all. Subcommands are imported by name only when they run, so
``strangler --help`` stays fast and the proxy package never imports Django (the import
happens in the job's own package, at the edge, when the user asks for it).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
from typing import Any

import click

# name -> (import path "module:attribute", one-line help shown by `strangler --help`)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("strangler.demo:demo", "Set up and run the demo: monolith, proxy, services."),
    "monolith": ("legacy_monolith.cli:monolith", "Run, seed and drive the demo monolith."),
    "analyze": ("analysis.cli:analyze", "Find the seams: propose bounded contexts for a project."),
    "proxy": ("strangler_proxy.commands.proxy:proxy", "Run the strangler proxy."),
    "routes": ("strangler_proxy.commands.routes:routes", "List, show, validate and flip routes."),
    "shadow": ("strangler_proxy.commands.shadow:shadow", "Read what shadow traffic found."),
    "rollout": ("strangler_proxy.commands.rollout:rollout",
                "Start, watch, pause, promote or abort a route's guarded rollout."),
    "status": ("strangler_proxy.commands.rollout:status",
               "The strangulation meter: how much the services have taken."),
    "record": ("strangler_proxy.commands.replay:record", "Record traffic with mitmproxy."),
    "replay": ("strangler_proxy.commands.replay:replay", "Replay recorded traffic and compare."),
    "export": ("strangler_proxy.commands.export:export",
               "Compile the routes file for nginx, HAProxy, Envoy or Istio."),
    "catalog": ("extracted.catalog.cli:catalog", "Run the extracted catalog service."),
    "ordering": ("extracted.ordering.cli:ordering", "Run the extracted ordering service."),
    "relay": ("extracted.sync.cli:relay", "Deliver outbox events to a service."),
    "backfill": ("extracted.sync.cli:backfill", "Copy existing rows to a service."),
    "reconcile": ("extracted.sync.cli:reconcile", "Compare a context's rows on both sides."),
    "cutover": ("extracted.sync.cli:cutover", "Move a context's data ownership (or --undo)."),
    "outbox": ("extracted.sync.cli:outbox", "Prune what every consumer acknowledged."),
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(n for n, (path, _) in COMMANDS.items() if _module_exists(path))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        module_name, _, attr = entry[0].partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                return None
            raise
        command: click.Command = getattr(module, attr)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(n, COMMANDS[n][1]) for n in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def _module_exists(path: str) -> bool:
    module_name = path.partition(":")[0]
    try:
        return importlib.util.find_spec(module_name) is not None
    except ModuleNotFoundError:
        return False


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors.")
@click.version_option(package_name="strangler")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """strangler: move a Django monolith to services one endpoint at a time.

    \b
    The migration, in the order you will run it:
      strangler analyze legacy_monolith     find the seams, write report.html
      strangler proxy --config strangler.toml
                                            put the proxy in front of the monolith
      strangler routes set catalog --mode shadow
                                            copy traffic to the new service, compare
      strangler shadow report               read the differences
      strangler routes set catalog --mode canary --percent 10
                                            move some users, sticky, gated on evidence
    Run `strangler demo` to see all of it on the demo shop.
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug or bool(os.environ.get("STRANGLER_DEBUG"))


class StranglerError(Exception):
    """Base of every user-facing error: printed as one line, exit status 2."""


def main(argv: list[str] | None = None) -> Any:
    """Entry point of the ``strangler`` console script.

    Errors that derive from a package's error base, and usage errors, print as one line on
    stderr and exit 2; ``--debug`` (or ``STRANGLER_DEBUG=1``) shows the traceback instead.
    With ``--json`` anywhere on the line, the error is JSON on stdout instead,
    ``{"error": ..., "hint": ...}``, with the same exit status.
    """
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args or bool(os.environ.get("STRANGLER_DEBUG"))
    as_json = "--json" in args
    try:
        cli.main(args=args, prog_name="strangler", standalone_mode=False)
        return None
    except click.exceptions.Exit as exc:
        raise SystemExit(exc.exit_code) from None
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        raise SystemExit(1) from None
    except click.ClickException as exc:  # usage errors: bad option, missing argument
        if not as_json:
            exc.show()
            raise SystemExit(exc.exit_code) from None
        _fail(exc.format_message(), exc.exit_code, as_json=True)
    except Exception as exc:  # noqa: BLE001 - the one place that turns errors into lines
        if debug or not _is_user_error(exc):
            raise
        _fail(str(exc), 2, as_json)


def error_record(message: str) -> dict[str, str]:
    """``{"error": what failed, "hint": how to fix it}`` from a one-line message.

    Our messages say what failed, then the fix after the last ``; `` (STYLE.md, errors).

    >>> error_record("no route named 'x' (routes: a); see `strangler routes list`")
    {'error': "no route named 'x' (routes: a)", 'hint': 'see `strangler routes list`'}
    >>> error_record("something broke")
    {'error': 'something broke', 'hint': ''}
    """
    head, sep, hint = message.rpartition("; ")
    if not sep or "(" in hint and ")" not in hint:
        return {"error": message, "hint": ""}
    return {"error": head, "hint": hint}


def _fail(message: str, status: int, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(error_record(message)))
    else:
        click.echo(f"strangler: error: {message}", err=True)
    raise SystemExit(status)


def _is_user_error(exc: BaseException) -> bool:
    """True for the error bases of our packages (each names its own ``Error`` base)."""
    return any(
        getattr(klass, "strangler_user_error", False) for klass in type(exc).__mro__
    ) or isinstance(exc, StranglerError)


if __name__ == "__main__":
    main()
