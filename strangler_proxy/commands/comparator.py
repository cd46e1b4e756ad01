"""``strangler shadow serve``: the standalone comparator (``shadow/serve.py``)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from strangler_proxy.commands.options import config_option

if TYPE_CHECKING:
    from strangler_proxy.shadow.serve import ComparatorServer


@click.command()
@config_option
@click.option("--listen", default="127.0.0.1:8090", show_default=True, metavar="HOST:PORT",
              help="Where mirrors and the proxy's batches arrive (port 0: one from the OS).")
@click.option("--insecure-no-auth", is_flag=True,
              help="Take unsigned batches and mirrors without a token (loopback only).")
@click.option("--print-mirror-token", is_flag=True,
              help="Print the token engines send with mirrors, then exit.")
def serve(config_path: Path, listen: str, insecure_no_auth: bool,
          print_mirror_token: bool) -> None:
    """Compare mirrored requests off the proxy's cores and store the diff records.

    Takes the batches of a proxy with `shadow.proxy_sends_to = "comparator"` and the
    mirrors of an exported engine (`strangler export`); writes the routes file's diff store,
    which `strangler shadow report`, the gate and rollouts read.
    """
    from strangler_proxy.config import load_config
    from strangler_proxy.errors import StartupError
    from strangler_proxy.shadow.serve import TOKEN_PREFIX, ComparatorServer, mirror_token

    if print_mirror_token:
        secret = load_config(config_path).shadow.resolve_marker_secret(os.environ)
        if not secret:
            raise StartupError(f"{config_path}: no shadow.marker_secret (or marker_secret_env "
                               "set in this environment): the token is derived from it")
        token = mirror_token(secret)
        click.echo(token)
        click.echo(f"header: X-Strangler-Comparator-Token: {token}; or comparator_url = "
                   f"\"http://HOST:PORT{TOKEN_PREFIX}{token}\"", err=True)
        return
    logging.basicConfig(level=logging.WARNING, format="comparator: %(message)s")
    server = ComparatorServer(config_path, listen, auth=not insecure_no_auth)
    try:  # the proxy's loop too: cheaper per request than asyncio's own
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency; asyncio still works
        asyncio.run(_run(server, config_path))
        return
    uvloop.run(_run(server, config_path))


async def _run(server: ComparatorServer, config_path: Path) -> None:
    from strangler_proxy.shadow.serve import serve_until

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def ready(address: str) -> None:
        click.echo(f"strangler shadow serve: listening on http://{address} "
                   f"(routes {config_path}, pid {os.getpid()})")
        sys.stdout.flush()

    await serve_until(server, stop, ready)
