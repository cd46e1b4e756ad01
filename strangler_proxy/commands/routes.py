"""``strangler routes list|show|set|validate``: read and flip routes in the routes file."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.table import Table

from strangler_proxy.commands.options import config_option, output_console
from strangler_proxy.config import MODES, ProxyConfig, Route, load_config
from strangler_proxy.control import apply_route_change, read_audit, route_record
from strangler_proxy.errors import ConfigError, ProxyError

CONFIG_OPTION = config_option
JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")


@click.group()
def routes() -> None:
    """List, show, validate and flip the routes of a routes file.

    \b
    Edits keep your comments and layout, are validated before they are written, pass the
    promotion gate when they send more traffic to a service (--force overrides, audited),
    and are appended to <config>.audit.jsonl. A running proxy picks the change up by itself.
    """


def _mode_text(route: Route) -> str:
    if route.mode == "canary":
        percent = route.percent
        return f"canary {int(percent) if float(percent).is_integer() else percent}%"
    return str(route.mode)


def _routes_table(config: ProxyConfig) -> Table:
    table = Table(title=f"routes in {config.source}")
    for column in ("name", "match", "methods", "mode", "target", "sticky", "line"):
        table.add_column(column, overflow="fold")
    for route in config.routes:
        table.add_row(route.name, route.match.describe, ",".join(sorted(route.match.methods))
                      or "any", _mode_text(route), route.target, route.sticky,
                      str(route.line))
    table.add_row("default", "/", "any", "monolith", "monolith", "-", "-")
    return table


@routes.command("list")
@CONFIG_OPTION
@JSON_OPTION
def list_routes(config_path: Path, as_json: bool) -> None:
    """List the routes in order of matching (the built-in default comes last)."""
    config = load_config(config_path)
    if as_json:
        click.echo(json.dumps({"config": str(config_path),
                               "routes": [route_record(r) for r in config.routes]}, indent=2))
        return
    output_console().print(_routes_table(config))
    for warning in config.warnings:
        click.echo(f"warning: {warning}", err=True)


@routes.command("show")
@click.argument("name")
@CONFIG_OPTION
@JSON_OPTION
def show_route(name: str, config_path: Path, as_json: bool) -> None:
    """Show one route and its recent flips."""
    config = load_config(config_path)
    route = config.route(name)
    if route is None:
        raise ConfigError(f"no route named {name!r} in {config_path} (routes: "
                          f"{', '.join(r.name for r in config.routes) or 'none'})")
    history = [r for r in read_audit(config_path) if r.get("route") == name][-10:]
    record = route_record(route) | {"history": history}
    if as_json:
        click.echo(json.dumps(record, indent=2))
        return
    console = output_console()
    table = Table(title=f"route {name} ({config_path}, line {route.line})", show_header=False)
    table.add_column("key")
    table.add_column("value")
    for key, value in route_record(route).items():
        table.add_row(key, value if isinstance(value, str) else json.dumps(value))
    console.print(table)
    for item in history:
        console.print(f"{item['when']}  {item['who']}: {item['old']} -> {item['new']}"
                      f"{' (forced)' if item.get('forced') else ''}  {item.get('reason', '')}")


@routes.command("set")
@click.argument("name")
@click.option("--mode", type=click.Choice(MODES), default=None, help="The new mode.")
@click.option("--percent", type=click.FloatRange(0, 100), default=None,
              help="Share of users sent to the service (canary).")
@click.option("--reason", default="", help="Why (kept in the audit record).")
@click.option("--force", is_flag=True, help="Promote even when the gate refuses (audited).")
@click.option("--since", default=None, metavar="WHEN",
              help="Gate on shadow evidence since WHEN only (30m, 2h, 7d or an ISO time), "
                   "e.g. since a fix was deployed. Default: all evidence.")
@CONFIG_OPTION
@JSON_OPTION
def set_route(name: str, mode: str | None, percent: float | None, reason: str, force: bool,
              since: str | None, config_path: Path, as_json: bool) -> None:
    """Flip route NAME to a new mode (and percent), in place, validated, gated and audited.

    \b
    Examples:
      strangler routes set catalog --mode shadow
      strangler routes set catalog --mode canary --percent 10 --reason "first users"
      strangler routes set catalog --mode service --since 2h --reason "fixed prices"
      strangler routes set catalog --mode monolith --reason rollback
    """
    if mode is None and percent is None:
        raise click.UsageError("give --mode and/or --percent")
    try:
        change = apply_route_change(config_path, name, mode, percent, reason, force,
                                    since=since)
    except ProxyError as exc:
        if as_json:  # machines get the refusal on stdout too (and the exit status 2)
            click.echo(json.dumps({"route": name, "changed": False, "refused": True,
                                   "error": str(exc)}, indent=2))
        raise
    if as_json:
        click.echo(json.dumps({"route": change.route, "old": change.old, "new": change.new,
                               "changed": change.changed, "forced": change.forced,
                               "gate": change.gate_reason, "since": change.since,
                               "warning": change.stale_data_warning or None,
                               "engine": change.engine or None},
                              indent=2))
        return
    if not change.changed:
        click.echo(f"{change.route}: already {change.new['mode']}; nothing changed")
        return
    if change.stale_data_warning:
        click.echo(change.stale_data_warning, err=True)
    click.echo(f"changed {change.describe()} in {config_path}"
               + (" (FORCED past the gate: " + change.gate_reason + ")" if change.forced else ""))
    if change.gate_reason and not change.forced:
        click.echo(f"gate: {change.gate_reason}")
    if change.engine:
        click.echo(f"exported engine: {change.engine}")
    click.echo("a running proxy picks this up within its reload_interval")


@routes.command("validate")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False), required=False)
@CONFIG_OPTION
@JSON_OPTION
def validate(file: Path | None, config_path: Path, as_json: bool) -> None:
    """Check a routes file without applying it (exit 2 with the first error)."""
    path = file or config_path
    config = load_config(path)
    if as_json:
        click.echo(json.dumps({"ok": True, "file": str(path), "routes": len(config.routes),
                               "warnings": list(config.warnings)}, indent=2))
        return
    for warning in config.warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo(f"{path}: ok ({len(config.routes)} routes, {len(config.upstreams)} upstreams"
               f"{', ' + str(len(config.warnings)) + ' warnings' if config.warnings else ''})")


__all__ = ["routes"]
