"""``strangler demo``: the whole toolkit on the demo shop, on one machine, no containers.

Runs every part as its own local process (the same commands a user would type), so the demo
exercises exactly what the docs describe: migrate and seed the monolith on SQLite, serve it
with gunicorn, serve the extracted catalog service, put the proxy in front with a routes
file, write the analysis report, print where to look, and stop everything on Ctrl-C.

It imports none of the parts: each runs as ``python -m strangler.cli <subcommand>``,
so the proxy package keeps its promise never to import Django.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import click
import httpx
import tomlkit

from strangler_proxy.config import parse_config
from strangler_proxy.errors import ConfigError
from strangler_proxy.write_atomic import write_atomic


class DemoError(Exception):
    """A demo step failed; the message says which and how to fix it."""

    strangler_user_error = True


@dataclass(frozen=True)
class Step:
    """One process of the demo: how to start it and how to know it is up."""

    name: str
    argv: tuple[str, ...]
    port: int
    health_path: str = "/healthz"
    env: dict[str, str] = field(default_factory=dict)
    needs_module: str = ""


@dataclass(frozen=True)
class DemoPorts:
    """The ports the demo listens on, all on 127.0.0.1."""

    monolith: int = 8000
    catalog: int = 8001
    proxy: int = 8080
    admin: int = 8081


DEMO_TOKEN = "demo-admin-token"  # noqa: S105 - a demo-only token, printed for the user


def strangler(*args: str) -> tuple[str, ...]:
    """The argv that runs ``strangler ARGS`` with this interpreter."""
    return (sys.executable, "-m", "strangler.cli", *args)


# (name, match, target): the routes of the demo file, in match order. A product's reviews
# and stock belong to other contexts, so they stay with the monolith ahead of the prefix.
DEMO_ROUTES: tuple[tuple[str, str, str], ...] = (
    ("product-reviews", 'path_template = "/api/products/{id}/reviews/"', "monolith"),
    ("product-stock", 'path_template = "/api/products/{id}/stock/"', "monolith"),
    ("catalog", 'path_prefix = "/api/products/"', "catalog"),
    ("catalog-categories", 'path_prefix = "/api/categories/"', "catalog"),
    ("catalog-brands", 'path_prefix = "/api/brands/"', "catalog"),
)


def route_table_text(name: str, match: str, target: str) -> str:
    """One ``[[routes]]`` entry of the demo file, in mode monolith."""
    lines = ["[[routes]]", f'name = "{name}"', f"match = {{ {match} }}", 'mode = "monolith"',
             f'target = "{target}"']
    if target != "monolith":  # catalog routes share one salt: a user stays on one side
        lines += [f'group = "{target}"', 'sticky = "header:X-User-Id"']
    return "\n".join(lines) + "\n"


def routes_file_text(ports: DemoPorts, with_catalog: bool) -> str:
    """The demo's routes file: the monolith behind the proxy, catalog routes ready to flip."""
    catalog = ""
    if with_catalog:
        catalog = (
            f'\n[upstreams.catalog]\nurl = "http://127.0.0.1:{ports.catalog}"\n\n'
            "# The catalog context, proposed first for extraction by `strangler analyze`.\n"
            "# Flip a route with: strangler routes set catalog --mode shadow --config CONFIG\n"
            + "\n".join(route_table_text(*route) for route in DEMO_ROUTES)
        )
    return f"""# The demo's routes file, written by `strangler demo` (kept if it already exists).
# Comments like this one survive `strangler routes set`.
[proxy]
listen = "127.0.0.1:{ports.proxy}"

[admin]
listen = "127.0.0.1:{ports.admin}"
token_env = "STRANGLER_ADMIN_TOKEN"
# the analysis report: the dashboard's meter and `strangler status` show its contexts
report = "report/report.json"

[shadow]
store = "strangler-diffs.sqlite3"

[upstreams.monolith]
url = "http://127.0.0.1:{ports.monolith}"
{catalog}"""


def plan_services(data_dir: Path, ports: DemoPorts) -> list[Step]:
    """The application servers of the demo (started before the data sync and the proxy)."""
    env = {"STRANGLER_DATA_DIR": str(data_dir),
           "CATALOG_AUTH_URL": f"http://127.0.0.1:{ports.monolith}"}
    steps = [
        Step("monolith",
             strangler("monolith", "serve", "--port", str(ports.monolith), "--workers", "2"),
             ports.monolith, env=env),
        Step("catalog", strangler("catalog", "serve", "--port", str(ports.catalog)),
             ports.catalog, env=env, needs_module="extracted.catalog.cli"),
    ]
    return [s for s in steps if not s.needs_module or _has_module(s.needs_module)]


def plan_front(data_dir: Path, config: Path, ports: DemoPorts, with_catalog: bool) -> list[Step]:
    """What runs once the servers are up: the relay (catalog kept in step) and the proxy."""
    env = {"STRANGLER_DATA_DIR": str(data_dir), "STRANGLER_ADMIN_TOKEN": DEMO_TOKEN}
    steps = []
    if with_catalog and _has_module("extracted.sync.cli"):
        steps.append(Step(
            "relay",
            strangler("relay", "--source-db", source_db(data_dir), "--target",
                      f"http://127.0.0.1:{ports.catalog}/internal/events/",
                      "--status-file", str(data_dir / "relay-status.json")),
            0, env=env))
    steps.append(Step("proxy", strangler("proxy", "--config", str(config)), ports.admin,
                      env=env, needs_module="strangler_proxy.commands.proxy"))
    return [s for s in steps if not s.needs_module or _has_module(s.needs_module)]


def source_db(data_dir: Path) -> str:
    """The URL of the monolith's SQLite database, which the relay and backfill read."""
    return f"sqlite:///{data_dir / 'monolith.sqlite3'}"


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def ensure_port_free(port: int, name: str) -> None:
    """Fail with one line if something already listens on 127.0.0.1:PORT."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            raise DemoError(
                f"port {port} (for the {name}) is already in use; stop what uses it "
                f"(`ss -ltnp 'sport = :{port}'`) or pass --port-base to shift all demo ports"
            ) from None


# The demo is the embedded default: SQLite files in the data directory, whatever database
# URLs the calling shell (or CI) has exported for other purposes.
_NOT_INHERITED = ("DATABASE_URL", "CATALOG_DATABASE_URL", "STRANGLER_SOURCE_DB")


def child_env(extra: dict[str, str]) -> dict[str, str]:
    """The environment of a demo process: ours minus database URLs, plus EXTRA."""
    env = {k: v for k, v in os.environ.items() if k not in _NOT_INHERITED}
    return {**env, **extra}


def run_setup(argv: tuple[str, ...], env: dict[str, str], what: str) -> None:
    """Run one setup command to completion; on failure raise with its last line of output."""
    done = subprocess.run(  # noqa: S603 - argv is ours
        argv, env=child_env(env), capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        last = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
        raise DemoError(f"{what} failed: {last} (command: {' '.join(argv[2:])})")


def wait_healthy(proc: subprocess.Popen[bytes], step: Step, log: Path, timeout: float) -> None:
    """Poll the step's health endpoint until it answers 200, the process dies, or time runs out."""
    if step.port == 0:  # no HTTP endpoint: alive after a short while is up
        time.sleep(1.0)
        if proc.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise DemoError(f"the {step.name} exited at start: {tail[0]} (log: {log})")
        return
    url = f"http://127.0.0.1:{step.port}{step.health_path}"
    headers = {"Authorization": f"Bearer {DEMO_TOKEN}"}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise DemoError(f"the {step.name} exited at start: {tail[0]} (log: {log})")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, headers=headers, timeout=1.0).status_code == 200:
                return
        time.sleep(0.2)
    raise DemoError(f"the {step.name} did not become healthy at {url} in {timeout:.0f}s "
                    f"(log: {log})")


@contextlib.contextmanager
def running(steps: list[Step], logs: Path, timeout: float) -> Iterator[list[str]]:
    """Start the steps in order, yield their names, and stop them all on the way out."""
    procs: list[tuple[Step, subprocess.Popen[bytes]]] = []
    try:
        for step in steps:
            log = logs / f"{step.name}.log"
            with log.open("wb") as out:
                proc = subprocess.Popen(  # noqa: S603 - argv is ours
                    step.argv, env=child_env(step.env), stdout=out,
                    stderr=subprocess.STDOUT, start_new_session=True,
                )
            procs.append((step, proc))
            wait_healthy(proc, step, log, timeout)
        yield [s.name for s, _ in procs]
    finally:
        for _, proc in reversed(procs):
            stop_process(proc)


def stop_process(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM the process group, wait, then SIGKILL what is left."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=grace)


def what_to_try(ports: DemoPorts, config: Path, report: Path | None, names: list[str]) -> str:
    """The text printed once everything is up."""
    lines = [
        "",
        "strangler demo is running (" + ", ".join(names) + "). Ctrl-C stops everything.",
        "",
        f"  monolith            http://127.0.0.1:{ports.monolith}/api/   "
        f"(OpenAPI: /api/schema/, docs: /api/docs/)",
    ]
    if "catalog" in names:
        lines.append(f"  catalog service     http://127.0.0.1:{ports.catalog}/api/products/")
    if "proxy" in names:
        lines += [
            f"  proxy (use this)    http://127.0.0.1:{ports.proxy}/api/products/",
            f"  admin + dashboard   http://127.0.0.1:{ports.admin}/login (token {DEMO_TOKEN})",
            f"  routes file         {config}",
        ]
    if report is not None:
        lines.append(f"  analysis report     {report}")
    cmd = command_prefix()
    lines += ["", "Try (in another terminal, from this folder):"]
    if cmd != "strangler":
        activate = Path(cmd).parent / "activate"
        lines.append(f"  (or run `source {activate}` once, then type plain `strangler`)")
    lines += [
        f"  curl -si http://127.0.0.1:{ports.proxy}/api/products/ | grep X-Strangler-Route",
        f"  STRANGLER_DATA_DIR={config.parent} {cmd} monolith workload "
        f"--base-url http://127.0.0.1:{ports.proxy} --requests 200",
        f"  export STRANGLER_CONFIG={config}",
        f"  {cmd} routes set catalog --mode shadow",
        f"  {cmd} shadow report",
        "  then read docs/walkthrough.md for the whole migration.",
    ]
    return "\n".join(lines)


@click.command()
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path(".demo"), show_default=True,
              help="Where the demo keeps its databases, routes file, logs and report.")
@click.option("--port-base", type=int, default=8000, show_default=True,
              help="Monolith on BASE, catalog on BASE+1, proxy on BASE+80, admin on BASE+81.")
@click.option("--size", type=click.Choice(["small", "large"]), default="small",
              show_default=True, help="How much demo data to seed.")
@click.option("--no-report", is_flag=True, help="Skip the analysis report.")
@click.option("--check", is_flag=True,
              help="Start everything, send one request through the proxy, then stop (for CI).")
@click.option("--startup-timeout", type=float, default=60.0, show_default=True,
              help="Seconds each process may take to become healthy.")
def demo(data_dir: Path, port_base: int, size: str, no_report: bool, check: bool,
         startup_timeout: float) -> None:
    """Set up and run the demo shop behind the strangler proxy.

    \b
    1. migrate and seed the monolith on SQLite (in --data-dir); migrate the catalog service
    2. write the analysis report of legacy_monolith/ to DATA_DIR/report/
    3. start the monolith and the extracted catalog service (gunicorn)
    4. backfill the catalog service and start the relay that keeps it in step
    5. start the proxy in front; print the URLs and what to try; Ctrl-C stops everything

    Running it again reuses the data directory: the database is re-seeded, the routes file
    (and the flips you made in it) is kept.
    """
    data_dir = data_dir.resolve()
    ports = DemoPorts(port_base, port_base + 1, port_base + 80, port_base + 81)
    (data_dir / "logs").mkdir(parents=True, exist_ok=True)
    config = data_dir / "strangler.toml"
    with_catalog = _has_module("extracted.catalog.cli")
    services = plan_services(data_dir, ports)
    front = plan_front(data_dir, config, ports, with_catalog)
    for step in [*services, *front]:
        if step.port:
            ensure_port_free(step.port, step.name)
    if any(s.name == "proxy" for s in front):
        ensure_port_free(ports.proxy, "proxy")
    env = {"STRANGLER_DATA_DIR": str(data_dir)}
    click.echo(f"[1/5] migrating and seeding the monolith ({size}) in {data_dir}")
    run_setup(strangler("monolith", "migrate"), env, "migrating the monolith")
    run_setup(strangler("monolith", "seed", "--size", size), env, "seeding the monolith")
    if with_catalog:
        run_setup(strangler("catalog", "migrate"), env, "migrating the catalog service")
    if not config.exists():
        write_atomic(config, routes_file_text(ports, with_catalog).replace(
            "CONFIG", str(config)))
    else:
        _follow_port_base(config, ports)
    report = None if no_report else _write_report(data_dir)
    logs = data_dir / "logs"
    click.echo("[3/5] starting " + ", ".join(s.name for s in services))
    with contextlib.ExitStack() as stack:
        names = stack.enter_context(running(services, logs, startup_timeout))
        if with_catalog and _has_module("extracted.sync.cli"):
            click.echo("[4/5] backfilling the catalog service, then starting the relay")
            run_setup(strangler("backfill", "--source-db", source_db(data_dir), "--service-url",
                                f"http://127.0.0.1:{ports.catalog}"),
                      env, "backfilling the catalog service")
        names = names + stack.enter_context(running(front, logs, startup_timeout))
        click.echo("[5/5] ready")
        click.echo(what_to_try(ports, config, report, names))
        if check:
            _smoke(ports, names)
            return
        _wait_for_interrupt()
    click.echo("stopped everything; the data stays in " + str(data_dir))


def _write_report(data_dir: Path) -> Path | None:
    if not _has_module("analysis.cli"):
        return None
    source = Path(__file__).resolve().parent.parent / "legacy_monolith"
    out = data_dir / "report"
    click.echo(f"[2/5] analysing {source} -> {out}")
    run_setup(strangler("analyze", str(source), "--out", str(out)), {}, "the analysis")
    return out / "report.html"


def _smoke(ports: DemoPorts, names: list[str]) -> None:
    port = ports.proxy if "proxy" in names else ports.monolith
    url = f"http://127.0.0.1:{port}/api/products/"
    response = httpx.get(url, timeout=10.0)
    if response.status_code != 200:
        raise DemoError(f"GET {url} answered {response.status_code}, expected 200")
    click.echo(f"check: GET {url} -> 200, served by "
               f"{response.headers.get('x-strangler-route', 'the monolith directly')}")


def _wait_for_interrupt() -> None:
    """Block until Ctrl-C or SIGTERM.

    Both handlers are installed explicitly: a shell that starts the demo in the background
    sets SIGINT to "ignore", and Python then never raises KeyboardInterrupt.
    """
    stop = False

    def _on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    while not stop:
        time.sleep(0.2)
    click.echo("\nstopping...")


def retarget_ports(text: str, ports: DemoPorts) -> str:
    """The kept routes file with its listen addresses and demo upstreams on ``ports``.

    Everything else (route modes, percentages, the user's comments) stays as it was. Only
    the keys the demo wrote are touched: ``[proxy].listen``, ``[admin].listen`` and the
    ``monolith`` and ``catalog`` upstream URLs, when they point at 127.0.0.1.

    >>> old = routes_file_text(DemoPorts(), with_catalog=True).replace(
    ...     'mode = "monolith"\ntarget = "catalog"', 'mode = "shadow"\ntarget = "catalog"', 1)
    >>> new = retarget_ports(old, DemoPorts(9000, 9001, 9080, 9081))
    >>> "127.0.0.1:9080" in new, "127.0.0.1:9001" in new, 'mode = "shadow"' in new
    (True, True, True)
    """
    document = tomlkit.parse(text)
    wanted = {("proxy", "listen"): f"127.0.0.1:{ports.proxy}",
              ("admin", "listen"): f"127.0.0.1:{ports.admin}"}
    for table_key, value in wanted.items():
        table = document.get(table_key[0])
        if isinstance(table, dict) and str(table.get(table_key[1], "")).startswith("127.0.0.1:"):
            table[table_key[1]] = value
    upstreams = document.get("upstreams", {})
    for name, port in (("monolith", ports.monolith), ("catalog", ports.catalog)):
        upstream = upstreams.get(name) if isinstance(upstreams, dict) else None
        if isinstance(upstream, dict) and str(upstream.get("url", "")).startswith(
                "http://127.0.0.1:"):
            upstream["url"] = f"http://127.0.0.1:{port}"
    return tomlkit.dumps(document)


def _follow_port_base(config: Path, ports: DemoPorts) -> None:
    """Move a kept routes file to this run's ports; a file that no longer parses is named."""
    text = config.read_text(encoding="utf-8")
    try:
        new_text = retarget_ports(text, ports)
        parse_config(new_text, source=str(config))
    except (ConfigError, Exception) as exc:  # noqa: BLE001 - any unreadable file is the user's
        raise DemoError(f"{config}: the kept routes file cannot be used ({exc}); fix it, or "
                        "delete it to have the demo write a fresh one") from None
    if new_text != text:
        write_atomic(config, new_text)
        click.echo(f"      {config}: listen addresses and upstreams moved to --port-base "
                   f"{ports.monolith} (route modes kept)")


def command_prefix() -> str:
    """How the user should type ``strangler`` in their shell for this installation.

    ``strangler`` when it is on PATH and is this installation's; else the script's path
    (relative when it is under the current directory), e.g. ``.venv/bin/strangler``.
    """
    script = Path(sys.executable).parent / "strangler"
    on_path = shutil.which("strangler")
    if on_path and Path(on_path).resolve() == script.resolve():
        return "strangler"
    try:
        return str(script.relative_to(Path.cwd()))
    except ValueError:
        return str(script)


__all__ = ["DemoPorts", "demo", "plan_front", "plan_services", "routes_file_text"]
