"""One entry point for every engine: the files an export writes, by path."""

from __future__ import annotations

from pathlib import Path

from strangler_proxy.export.bucket_lua import BUCKET_LUA
from strangler_proxy.export.plan import ENGINES, ExportError, ExportPlan


def render_files(engine: str, plan: ExportPlan, output: Path,
                 runtime_dir: Path | None = None) -> dict[Path, str]:
    """``{path: text}`` for ``engine``: the config at ``output``, plus helper files beside it.

    ``runtime_dir`` (default: ``output``'s directory) holds what the engine writes at run
    time: pid file, temp files, logs.
    """
    run = runtime_dir or output.parent
    if engine == "nginx":
        from strangler_proxy.export.nginx import render_nginx

        return {output: render_nginx(plan, run)}
    if engine == "haproxy":
        from strangler_proxy.export.haproxy import LUA_FILE, render_haproxy

        lua = output.parent / LUA_FILE
        files = {output: render_haproxy(plan, run, lua)}
        return {lua: BUCKET_LUA, **files} if plan.canary_routes else files
    if engine == "envoy":
        from strangler_proxy.export.envoy import render_envoy

        return {output: render_envoy(plan, run)}
    if engine == "istio":
        from strangler_proxy.export.istio import render_istio

        return {output: render_istio(plan)}
    raise ExportError(f"unknown engine {engine!r}; use one of {', '.join(ENGINES)}")


__all__ = ["render_files"]
