"""``strangler shadow report|export``: read what shadow traffic found."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from strangler_proxy.commands.options import config_option, output_console


@click.group()
def shadow() -> None:
    """Read what shadow traffic found: match rates, differences, regression cases."""


@shadow.command()
@config_option
@click.option("--route", "route_name", metavar="NAME", help="Only this route.")
@click.option("--since", metavar="WHEN", help="Only exchanges since 30m, 2h, 7d or an ISO time.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (the documented shape).")
@click.option("--top", default=10, show_default=True, type=click.IntRange(min=1),
              help="Differences shown per route.")
def report(config_path: Path, route_name: str | None, since: str | None, as_json: bool,
           top: int) -> None:
    """Per route: compared, match rate (95% CI), top differences, latency, drops, gate."""
    from strangler_proxy.config import load_config
    from strangler_proxy.shadow import build_report, open_config_store, parse_since

    config = load_config(config_path)
    store = open_config_store(config)
    try:
        data = build_report(config, store, route_name, parse_since(since))
    finally:
        store.close()
    for route in data["routes"]:
        route["differences"] = route["differences"][:top]
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
    else:
        _print_report(data)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _json(value: Any) -> str:
    """A compared value as JSON (``"415.71"`` is text, ``415.71`` a number), never a repr."""
    return json.dumps(value, ensure_ascii=False, default=str)


def _print_report(data: dict[str, Any]) -> None:
    from rich.table import Table

    console = output_console()
    gate = data["gate"]
    console.print(f"diff store: {data['store']}   gate: >= {gate['min_compared']} compared, "
                  f"95% lower bound >= {gate['min_match_rate']:.2%}")
    if not data["routes"]:
        console.print("no routes with a service target; nothing to report")
    for route in data["routes"]:
        _print_route(console, route, Table)


def _print_route(console: Any, route: dict[str, Any], table_class: Any) -> None:
    low, high = route["match_rate_ci"]
    lat = route["latency_ms"]
    needed = route["needed_for_gate"]
    gate = "clears the gate" if needed == 0 else (
        "cannot clear the gate" if needed < 0 else f"gate needs {needed} more matches")
    console.print(
        f"\n[bold]{route['name']}[/bold] ({route['mode']} -> {route['target']}): "
        f"{route['compared']} compared, {route['matched']} matched, match rate "
        f"{_pct(route['match_rate'] if route['compared'] else None)} "
        f"(95% CI {_pct(low)}-{_pct(high)}; before noise filter "
        f"{_pct(route['raw_match_rate'])}), {route['errors']} errors; {gate}")
    console.print(
        f"  latency p50/p95/p99 ms: monolith {_ms(lat['monolith']['p50'])}/"
        f"{_ms(lat['monolith']['p95'])}/{_ms(lat['monolith']['p99'])}, service "
        f"{_ms(lat['service']['p50'])}/{_ms(lat['service']['p95'])}/"
        f"{_ms(lat['service']['p99'])}")
    drops = ", ".join(f"{k}={v}" for k, v in route["dropped"].items()) or "none"
    console.print(f"  dropped: {drops}; noise samples: {route['noise_samples']}")
    if not route["differences"]:
        return
    table = table_class("count", "path", "kind", "noise", "example (monolith -> service)")
    for diff in route["differences"]:
        ev, ex = diff["noise"], diff["example"]
        noise = f"{ev['verdict']} ({ev['self_diffs']}/{ev['self_trials']} self, " \
                f"p={ev['p_value']:.3g})"
        table.add_row(str(diff["count"]), diff["path"], diff["kind"], noise,
                      f"{ex['request']}: {_json(ex['monolith'])} -> {_json(ex['service'])}"[:120])
    console.print(table)


@shadow.command()
@config_option
@click.option("--route", "route_name", metavar="NAME", required=True, help="The route.")
@click.option("--out", "out_dir", metavar="DIR", required=True, help="Directory to write to.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1),
              help="At most this many cases.")
@click.option("--since", metavar="WHEN", help="Only exchanges since 30m, 2h, 7d or an ISO time.")
def export(config_path: Path, route_name: str, out_dir: str, limit: int,
           since: str | None) -> None:
    """Write mismatches of a route as pytest regression cases for the service's suite."""
    from strangler_proxy.config import load_config
    from strangler_proxy.shadow import (
        ReportError,
        export_regressions,
        open_config_store,
        parse_since,
    )

    config = load_config(config_path)
    route = config.route(route_name)
    if route is None:
        raise ReportError(f"--route {route_name!r}: no such route in {config.source}")
    store = open_config_store(config)
    try:
        records = store.records(route=route_name, since=parse_since(since), verdict="mismatch",
                                kind="service", newest_first=True, bodies=True,
                                limit=limit * 20)
    finally:
        store.close()
    test_file, data_file, count = export_regressions(route, records, out_dir, limit)
    click.echo(f"wrote {count} cases: {test_file} (data: {data_file})")
    if count:
        click.echo(f"run: STRANGLER_SERVICE_URL=http://HOST:PORT pytest {test_file}")


def _add_serve() -> None:
    from strangler_proxy.commands.comparator import serve

    shadow.add_command(serve)


_add_serve()
