"""``strangler rollout ROUTE ACTION`` and ``strangler status``: talk to the running proxy.

The proxy drives rollouts itself (``control/rollout.py``); these commands only start, watch,
pause, resume, promote or abort them over the admin API (bearer token from the routes file or
its ``token_env``), and read the strangulation meter.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from strangler_proxy.commands.options import config_option, output_console
from strangler_proxy.config import ProxyConfig, load_config
from strangler_proxy.control import current_user
from strangler_proxy.errors import ProxyError
from strangler_proxy.meter_chart import ownership, read_report

ACTIONS = ("start", "status", "pause", "resume", "promote", "abort")


class AdminUnreachable(ProxyError):
    """The admin API of the proxy did not answer."""


def call_admin(config: ProxyConfig, method: str, path: str,
               body: dict[str, Any] | None = None) -> Any:
    """One admin API call; ProxyError with the server's message on a refusal."""
    token = config.admin.resolve_token(os.environ) or ""
    url = f"http://{config.admin.listen}{path}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:  # noqa: S310 - our admin
            return json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read()).get("error", str(exc))
        except ValueError:
            message = str(exc)
        raise ProxyError(f"the proxy refused: {message}") from None
    except OSError as exc:
        raise AdminUnreachable(f"no proxy answers at {url} ({exc}); start it with `strangler "
                               "proxy --config FILE` (the rollout runs inside it)") from None


@click.command("rollout")
@click.argument("route")
@click.argument("action", type=click.Choice(ACTIONS), default="status")
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
def rollout(route: str, action: str, config_path: Path, as_json: bool) -> None:
    """Start, watch, pause, resume, promote or abort ROUTE's guarded rollout.

    \b
    The plan is the route's [routes.rollout] table; the running proxy steps it up while
    every check passes and rolls it back by itself when one fails. Actions are audited.
      strangler rollout catalog start
      strangler rollout catalog status
      strangler rollout catalog abort
    """
    config = load_config(config_path)
    if action == "status":
        view = call_admin(config, "GET", f"/rollouts/{route}")
    else:
        view = call_admin(config, "POST", f"/rollouts/{route}",
                          {"action": action, "who": current_user()})
    if as_json:
        click.echo(json.dumps(view, indent=2))
        return
    state = view["rollouts"][route]
    steps = " → ".join(_step(s, i == state["step"]) for i, s in enumerate(state["steps"]))
    click.echo(f"{route}: {state['status']}, step {state['step'] + 1}/{len(state['steps'])}"
               f" ({state['current'] or 'not started'})")
    click.echo(f"  plan: {steps}")
    for check in state["checks"]:
        verdict = {True: "pass", False: "FAIL", None: "wait"}[check["passed"]]
        click.echo(f"  {check['check']:<13}{verdict}{' (dry run)' if check['dry_run'] else ''}"
                   f"  {check['message']}")
    for entry in state["history"][-3:]:
        click.echo(f"  {entry['when']}  {entry['kind']}: {entry['text']}")


def _step(step: Any, current: bool) -> str:
    text = step if isinstance(step, str) else f"{step:g}%"
    return f"[{text}]" if current else str(text)


@click.command("status")
@config_option
@click.option("--report", "report_path", type=click.Path(path_type=Path, dir_okay=False),
              default=None, help="An analysis report.json: also count its contexts' "
                                 "endpoints, models and tables owned by services "
                                 "(default: [admin] report of the routes file).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
def status(config_path: Path, report_path: Path | None, as_json: bool) -> None:
    """The strangulation meter: how much of the monolith the services have taken.

    Traffic shares come from the running proxy (last 5 minutes); without one, only the
    ownership shares from the routes file (and the report) are shown.
    """
    config = load_config(config_path)
    report, error = None, None
    if report_path is not None:
        report, error = read_report(report_path)
        if error:
            raise ProxyError(error)
    elif (configured := config.admin.report_path(config_path)) is not None:
        report, error = read_report(configured)  # [admin] report: a note when unreadable
    meter: dict[str, Any] = {"ownership": ownership({r.name: r.mode for r in config.routes},
                                                    report,
                                                    {r.name: r.match for r in config.routes})}
    try:
        live = call_admin(config, "GET", "/meter")
        meter |= {"overall": live["overall"], "routes": live["routes"], "proxy": True}
        rollouts = call_admin(config, "GET", "/rollouts")["rollouts"]
    except AdminUnreachable as exc:
        meter |= {"overall": None, "proxy": False, "note": str(exc),
                  "routes": {r.name: [r.mode, None] for r in config.routes}}
        rollouts = {}
    meter["rollouts"] = {n: {"status": s["status"], "current": s["current"]}
                         for n, s in rollouts.items()}
    if error:
        meter["report_error"] = error
    if as_json:
        click.echo(json.dumps(meter, indent=2))
        return
    _print_meter(meter)


def _print_meter(meter: dict[str, Any]) -> None:
    table = Table(title="strangulation meter")
    for column in ("route", "mode", "served by service (5 min)", "rollout"):
        table.add_column(column)
    for name, (mode, share) in sorted(meter["routes"].items()):
        roll = meter["rollouts"].get(name)
        table.add_row(name, mode, "-" if share is None else f"{share:.1%}",
                      f"{roll['status']} ({roll['current']})" if roll else "-")
    console = output_console()
    console.print(table)
    overall = meter["overall"]
    click.echo("services answer " + ("? (no proxy answered)" if overall is None
                                     else f"{overall:.1%}") + " of routed requests")
    for key, share in meter["ownership"].items():
        if isinstance(share, dict):
            click.echo(f"{key} owned by services: {share['owned']}/{share['total']} "
                       f"({share['share']:.1%})")
    if "contexts_owned" in meter["ownership"]:
        click.echo("contexts the services took: "
                   + (", ".join(meter["ownership"]["contexts_owned"]) or "none yet"))
    if meter.get("report_error"):
        click.echo(f"no contexts: {meter['report_error']}")
    for c in meter["ownership"].get("contexts", []):
        click.echo(f"context {c['name']}: {'moved' if c['moved'] else 'not yet'} (routes in "
                   f"service {c['routes']['in_service']}/{c['routes']['total']}, endpoints "
                   f"{c['endpoints']['taken']}/{c['endpoints']['total']})")


__all__ = ["rollout", "status"]
