"""The engine-neutral plan every exporter compiles: the routes file reduced to what a data plane
needs, with the refusals shared by all engines decided once.

:func:`build_plan` turns a :class:`~strangler_proxy.config.ProxyConfig` into an
:class:`ExportPlan`: the routes in matching order (the built-in ``default`` last), each with
its path as an anchored regex over the raw path (no query), its methods and header filters,
its mode, target, canary threshold and sticky key, and whether safe requests are mirrored to
the comparator. Each engine module then checks what *it* cannot express
(:func:`refuse`) and renders text. Pure functions: no files, no processes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from strangler_proxy.config import MONOLITH, ProxyConfig, Route, Upstream
from strangler_proxy.errors import ProxyError
from strangler_proxy.match import match_regex
from strangler_proxy.routing import BUCKETS, DEFAULT_ROUTE

ENGINES = ("nginx", "haproxy", "envoy", "istio")
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")  # mirrored in shadow mode (RFC 9110 safe methods)
ROUTE_HEADER = "X-Strangler-Route"
MIRROR_ROUTE_HEADER = "X-Strangler-Mirror-Route"  # on copies sent to the comparator
MIRROR_TARGET_HEADER = "X-Strangler-Mirror-Target"
# Every X-Strangler-* name the toolkit reads or writes. Engines that strip by prefix strip all
# of them; nginx and Istio can only strip by name, so they strip these (see scale-out.md).
# Stripped by the exported engines both ways, as our proxy strips headers.OWNED (kept in step
# by tests/strangler_proxy/export/test_export_plan.py).
KNOWN_STRANGLER_HEADERS = ("X-Strangler-Route", "X-Strangler-Side", "X-Strangler-Shadow",
                           "X-Strangler-Mirror-Route", "X-Strangler-Mirror-Target",
                           "X-Strangler-Shadow-Rolled-Back", "X-Strangler-Shadow-Changes")
ON_OUR_PROXY = "keep this route on our proxy (`strangler proxy`) in front of the engine"


class ExportError(ProxyError):
    """The routes file cannot be compiled for an engine (one line: route, feature, fix)."""


@dataclass(frozen=True, slots=True)
class PlannedRoute:
    """One route as every engine sees it."""

    name: str
    index: int  # position in the routes file (-1: the built-in default)
    path_regex: str  # anchored at both ends, over the raw path without the query
    kind: str  # "prefix" | "exact" | "template"
    path: str  # the literal prefix / path / template as written
    methods: tuple[str, ...]  # sorted; empty = any
    headers: tuple[tuple[str, str], ...]  # (lower-case name, exact value)
    mode: str
    target: str  # upstream name of the service side
    threshold: int  # canary: buckets (of 10000) below which a key goes to the service
    percent: float
    sticky_kind: str  # "header" | "cookie" | "client_ip"
    sticky_name: str  # header name (lower-case) or cookie name; "" for client_ip
    salt: str
    fallback: bool
    websocket: bool
    mirror: bool  # shadow mode: safe methods copied to the comparator
    mirror_percent: float
    source: Route

    @property
    def label(self) -> str:
        """How errors name the route: ``routes[2] ("catalog", line 31)``."""
        if self.index < 0:
            return 'the built-in route "default"'
        return f'routes[{self.index}] ("{self.name}", line {self.source.line})'

    @property
    def serves(self) -> str:
        """The upstream answering every request in monolith/shadow/service mode."""
        return self.target if self.mode == "service" else MONOLITH

    @property
    def is_canary(self) -> bool:
        """True when the side depends on the sticky bucket (0 < threshold < 10000)."""
        return self.mode == "canary" and self.target != MONOLITH


@dataclass(frozen=True, slots=True)
class ExportPlan:
    """The whole routes file as the exporters need it."""

    routes: tuple[PlannedRoute, ...]  # matching order; the built-in default is last
    upstreams: tuple[Upstream, ...]
    listen: str
    route_header: bool
    trusted_proxies: tuple[str, ...]
    comparator_url: str | None
    source: str

    def upstream(self, name: str) -> Upstream:
        """The upstream called ``name``."""
        return next(u for u in self.upstreams if u.name == name)

    @property
    def canary_routes(self) -> tuple[PlannedRoute, ...]:
        """The routes whose side is picked per user."""
        return tuple(r for r in self.routes if r.is_canary)


def refuse(route: PlannedRoute, engine: str, feature: str, alternative: str) -> ExportError:
    """The one-line refusal: route, engine, feature, what to do instead."""
    return ExportError(f"{route.label}: {engine} cannot express {feature}; {alternative}")


def build_plan(config: ProxyConfig, comparator_url: str | None = None,
               listen: str | None = None) -> ExportPlan:
    """Reduce a validated routes file to an :class:`ExportPlan`; refuse what no engine can do.

    ``comparator_url`` overrides ``[shadow].comparator_url``; ``listen`` overrides
    ``[export].listen`` / ``[proxy].listen``.

    >>> from strangler_proxy.config import parse_config
    >>> cfg = parse_config('[admin]\\ntoken = "t"\\n[upstreams.monolith]\\nurl = "http://h:1"')
    >>> [r.name for r in build_plan(cfg).routes]
    ['default']
    """
    comparator = comparator_url or config.shadow.comparator_url
    routes = [_plan_route(i, r, comparator) for i, r in enumerate(config.routes)]
    routes.append(_plan_route(-1, DEFAULT_ROUTE, comparator))
    return ExportPlan(
        routes=tuple(routes),
        # Only the upstreams a route sends traffic to: an engine resolves every upstream it is
        # given at load time, so an unused one that does not resolve yet must not stop it.
        upstreams=tuple(u for u in config.upstreams.values() if u.name == MONOLITH
                        or any(r.target == u.name and r.mode in ("service", "canary")
                               for r in routes)),
        listen=listen or config.export.listen or config.proxy.listen,
        route_header=config.proxy.route_header,
        trusted_proxies=tuple(str(n) for n in config.proxy.trusted_proxies),
        comparator_url=comparator,
        source=config.source,
    )


def _plan_route(index: int, route: Route, comparator: str | None) -> PlannedRoute:
    match = route.match
    kind = "prefix" if match.path_prefix is not None else \
        "exact" if match.path is not None else "template"
    regex = "^" + match_regex(match).replace(r"\Z", "") + ("" if kind == "prefix" else "$")
    kind_name, _, sticky_name = route.sticky.partition(":")
    planned = PlannedRoute(
        name=route.name, index=index, path_regex=_portable(regex), kind=kind,
        path=match.describe, methods=tuple(sorted(match.methods)),
        headers=tuple(sorted(match.headers.items())), mode=route.mode, target=route.target,
        threshold=round(route.percent * BUCKETS / 100), percent=route.percent,
        sticky_kind=kind_name,
        sticky_name=sticky_name.lower() if kind_name == "header" else sticky_name,
        salt=route.salt, fallback=route.fallback and route.mode in ("service", "canary"),
        websocket=route.websocket,
        mirror=route.mode == "shadow" and route.target != MONOLITH,
        mirror_percent=route.shadow.percent, source=route,
    )
    if planned.mirror and route.shadow.writes:
        raise refuse(planned, "an exported engine", "shadow.writes = true (copying "
                     "non-idempotent requests needs the signed shadow marker and rollback)",
                     f"set shadow.writes = false to mirror only {'/'.join(SAFE_METHODS)}, or "
                     f"{ON_OUR_PROXY}")
    if planned.mirror and not comparator:
        raise refuse(planned, "an exported engine", "shadow mode without a comparator (the "
                     "engine mirrors safe requests to the standalone comparator, "
                     "`strangler shadow serve`, issue 16)",
                     "set [shadow].comparator_url or pass --comparator-url, or " + ON_OUR_PROXY)
    return planned


def _portable(regex: str) -> str:
    r"""Python's ``re.escape`` output made plain PCRE/RE2: only escapes every engine reads.

    >>> _portable(r"^/api/products/\{x\}\-1")
    '^/api/products/\\{x\\}-1'
    """
    return re.sub(r"\\([^\w\\.^$|?*+()\[\]{}/])", r"\1", regex).replace("\\/", "/")


def safe_method_regex() -> str:
    """``^(GET|HEAD|OPTIONS)$``."""
    return "^(" + "|".join(SAFE_METHODS) + ")$"


__all__ = ["ENGINES", "ExportError", "ExportPlan", "KNOWN_STRANGLER_HEADERS",
           "MIRROR_ROUTE_HEADER", "MIRROR_TARGET_HEADER", "PlannedRoute", "ROUTE_HEADER",
           "SAFE_METHODS", "build_plan", "refuse", "safe_method_regex"]
