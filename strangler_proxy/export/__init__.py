"""Compile the routes file for the data planes teams already run: nginx, HAProxy, Envoy, Istio.

::

    routes file ──▶ config.ProxyConfig ──▶ plan.build_plan ──▶ ExportPlan
                                                 │ (refusals every engine shares)
                     nginx.render_nginx ◀────────┼────────▶ haproxy.render_haproxy
                     envoy.render_envoy ◀────────┴────────▶ istio.render_istio
    apply.stage_export: render, validate with the engine (nginx -t, haproxy -c), then
    install atomically and reload gracefully; logs.read_engine_log: per-route evidence.

The exporters import only the core (config, routing, errors).
"""

from __future__ import annotations

from strangler_proxy.export.plan import ENGINES, ExportError, ExportPlan, build_plan
from strangler_proxy.export.render import render_files

__all__ = ["ENGINES", "ExportError", "ExportPlan", "build_plan", "render_files"]
