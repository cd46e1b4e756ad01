"""``strangler export nginx|haproxy|envoy|istio``: compile the routes file for a data plane."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from strangler_proxy.commands.options import config_option
from strangler_proxy.config import load_config
from strangler_proxy.export.apply import engine_binary, run_check, stage_export, write_files
from strangler_proxy.export.plan import ENGINES, ExportError, build_plan
from strangler_proxy.export.render import render_files

RUN_DIR = Path("/run/strangler")


@click.command("export")
@click.argument("engine", type=click.Choice(ENGINES))
@config_option
@click.option("--out", "out", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Write the config here (HAProxy's Lua bucket script goes beside it). "
                   "Default: print it.")
@click.option("--comparator-url", default=None, metavar="URL",
              help="Where shadow routes mirror safe requests (overrides "
                   "[shadow].comparator_url).")
@click.option("--listen", default=None, metavar="HOST:PORT",
              help="The engine's client listener (default [export].listen, else "
                   "[proxy].listen).")
@click.option("--runtime-dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Pid file, temp files and logs of nginx/HAProxy/Envoy (default: --out's "
                   "directory, or /run/strangler when printing).")
@click.option("--check/--no-check", default=True, show_default=True,
              help="Run the engine's own check on the written file when the engine is "
                   "installed (nginx -t, haproxy -c, envoy --mode validate).")
@click.option("--apply", "apply_", is_flag=True,
              help="Use [export] in the routes file: render, check, install over "
                   "[export].output and reload the running engine gracefully.")
def export(engine: str, config_path: Path, out: Path | None, comparator_url: str | None,
           listen: str | None, runtime_dir: Path | None, check: bool, apply_: bool) -> None:
    """Compile the routes file for ENGINE; refuse (exit 2) a route it cannot express.

    \b
    Examples:
      strangler export nginx --out /etc/strangler/nginx.conf
      strangler export haproxy --out /etc/strangler/haproxy.cfg
      strangler export envoy --comparator-url http://10.0.0.5:8090 --out envoy.yaml
      strangler export istio --out strangler-istio.yaml   # kubectl apply -f
      strangler export nginx --apply          # [export] table: check, install, reload
    See docs/scale-out.md.
    """
    config = load_config(config_path)
    if apply_:
        if config.export.engine != engine:
            raise ExportError(f"--apply needs [export].engine = \"{engine}\" in {config_path} "
                              f"(it is {config.export.engine!r}); add an [export] table "
                              "(docs/config.md) or drop --apply")
        staged = stage_export(config)
        assert staged is not None  # engine and output are both set: checked on load
        click.echo(staged.install())
        return
    if engine == "envoy" and out is not None and out.suffix not in (".yaml", ".yml"):
        raise ExportError(f"--out {out}: Envoy reads a bootstrap by its extension and this one "
                          "is YAML; name the file *.yaml")
    plan = build_plan(config, comparator_url=comparator_url, listen=listen)
    output = out.absolute() if out else Path(f"strangler-{engine}.conf")
    # Printed configs keep their runtime files in /run/strangler unless told otherwise.
    runtime = runtime_dir.absolute() if runtime_dir else None if out else RUN_DIR
    files = render_files(engine, plan, output, runtime)
    if out is None:
        sys.stdout.write(files[output])
        if len(files) > 1:
            click.echo("note: this config loads a helper file; use --out to write both",
                       err=True)
        return
    write_files(files)
    binary = engine_binary(engine) if check and engine != "istio" else None
    if binary is not None:
        run_check(engine, binary, output)
    checked = f"checked with {Path(binary).name}" if binary else "not checked here"
    if check and engine == "istio":
        from strangler_proxy.export.istio import check_istio, istio_resources

        models = check_istio(istio_resources(plan))
        checked = f"checked with {models}" if models else \
            "not checked: install cloudcoil-models-istio"
    click.echo(f"wrote {', '.join(str(p) for p in files)} ({len(plan.routes) - 1} routes; "
               f"{checked})")


__all__ = ["export"]
