"""``strangler record`` and ``strangler replay``: recorded traffic, compared like shadow."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import click

from strangler_proxy.commands.options import config_option


@click.command()
@click.option("--upstream", required=True, metavar="URL",
              help="The monolith to record, e.g. http://127.0.0.1:8000.")
@click.option("--listen", default="127.0.0.1:8090", show_default=True, metavar="HOST:PORT",
              help="Where clients connect while recording.")
@click.option("--out", required=True, metavar="FILE", help="The flow file to write.")
@click.option("--duration", type=float, metavar="SECONDS",
              help="Stop after this long (default: until Ctrl-C).")
def record(upstream: str, listen: str, out: str, duration: float | None) -> None:
    """Record traffic with mitmproxy in reverse-proxy mode in front of the monolith."""
    from strangler_proxy.shadow import record as run_record

    def announce() -> None:
        click.echo(f"recording {upstream} on http://{listen} into {out}; Ctrl-C to stop",
                   err=True)

    status = run_record(upstream, listen, out, duration, announce)
    if status:
        click.echo(f"strangler: error: mitmdump exited with status {status} (its message is "
                   f"above); what it recorded is in {out}.part", err=True)
        raise SystemExit(status)
    click.echo(f"wrote {out}; replay it: strangler replay {out} --route NAME", err=True)


@click.command()
@click.argument("flows", nargs=-1, required=True, type=click.Path(dir_okay=False))
@config_option
@click.option("--route", "route_name", required=True, metavar="NAME", help="The route.")
@click.option("--rate", default=10.0, show_default=True, help="Requests per second at most.")
@click.option("--limit", default=1000, show_default=True, help="Exchanges at most.")
@click.option("--concurrency", default=4, show_default=True, help="Requests in flight at most.")
@click.option("--against-monolith", is_flag=True,
              help="Ask the monolith again too: it becomes the baseline; its differences from "
                   "the recording teach the noise filter.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def replay(flows: tuple[str, ...], config_path: Path, route_name: str, rate: float, limit: int,
           concurrency: int, against_monolith: bool, as_json: bool) -> None:
    """Replay recorded traffic (mitmproxy flows or HAR) to a route's service and compare."""
    from itertools import chain

    from strangler_proxy.config import load_config
    from strangler_proxy.shadow import load_exchanges
    from strangler_proxy.shadow import replay as run_replay

    config = load_config(config_path)
    exchanges = chain.from_iterable(load_exchanges(f) for f in flows)
    summary = asyncio.run(run_replay(config, route_name, exchanges, rate, limit,
                                     against_monolith, concurrency))
    if as_json:
        click.echo(json.dumps(summary.to_dict(), indent=2))
        return
    verdicts = ", ".join(f"{k} {v}" for k, v in sorted(summary.verdicts.items())) or "none"
    skipped = ", ".join(f"{k} {v}" for k, v in sorted(summary.skipped.items())) or "none"
    click.echo(f"read {summary.read}, replayed {summary.replayed} in {summary.seconds:.1f}s: "
               f"{verdicts}; skipped: {skipped}")
    click.echo(f"details: strangler shadow report --route {route_name} --config {config_path}")
