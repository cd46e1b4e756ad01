"""Pass 6: URL patterns, followed through ``include()`` and DRF routers, to their views.

Starts at ``ROOT_URLCONF`` (or, without settings, at every urls module nobody includes).
``path()`` converters become ``{name}``; simple ``re_path`` regexes are turned into the
same templates, and the rest keep their static prefix and are marked ``regex``.
"""

from __future__ import annotations

import re
from dataclasses import replace

from analysis.facts import Endpoint, FileFacts, RouterFact
from analysis.resolve import Resolver
from analysis.state import Analysis

_CONVERTER = re.compile(r"<(?:[a-zA-Z_]+:)?([a-zA-Z_][a-zA-Z0-9_]*)>")
_NAMED_GROUP = re.compile(r"\(\?P<([a-zA-Z_][a-zA-Z0-9_]*)>[^()]*(?:\([^()]*\)[^()]*)*\)")
_REGEX_CHARS = re.compile(r"[\\^$.*+?()\[\]{}|]")
VIEWSET_METHODS = {"list": ("GET", "POST"), "detail": ("GET", "PUT", "PATCH", "DELETE")}


def route_template(route: str, regex: bool) -> tuple[str, bool]:
    """A proxy path template for a Django route, and whether it stayed a regex.

    >>> route_template("api/products/<int:pk>/", False)
    ('api/products/{pk}/', False)
    >>> route_template(r"^api/orders/(?P<order_id>\\d+)/$", True)
    ('api/orders/{order_id}/', False)
    """
    if not regex:
        return _CONVERTER.sub(r"{\1}", route), False
    text = route.lstrip("^").rstrip("$")
    text = _NAMED_GROUP.sub(r"{\1}", text).replace("\\.", ".").replace("\\-", "-")
    if _REGEX_CHARS.search(text.replace("{", "").replace("}", "")):
        static = _REGEX_CHARS.split(text, 1)[0]
        return static, True
    return text, False


def extract_endpoints(a: Analysis) -> Analysis:
    """Every endpoint reachable from the root URLconf, with the models its view uses."""
    r: Resolver = a.resolve
    roots = _roots(a, r)
    endpoints: list[Endpoint] = []
    for root in roots:
        _walk(r, root, "/", endpoints, (), a)
    unique = {(e.template, e.view): e for e in endpoints}
    by_unit = {u.unit: set(u.models) for u in a.usages}
    endpoint_models = {e.template: _view_models(e.view, a.direct_use, by_unit)
                       for e in unique.values()}
    return replace(a, endpoints=tuple(sorted(unique.values(), key=lambda e: e.template)),
                   endpoint_models={k: v for k, v in endpoint_models.items() if v})


def _roots(a: Analysis, r: Resolver) -> list[str]:
    for f in a.facts:
        conf = dict(f.consts).get("ROOT_URLCONF")
        if conf and (mod := r.module(conf)):
            return [mod]
    url_modules = [f.module for f in a.facts if f.urls or f.routers]
    included = {r.module(u.include) if not u.include.startswith("@")
                else r.resolve(f.module, u.include[1:])  # include(api_urls), a module object
                for f in a.facts for u in f.urls if u.include}
    return [m for m in url_modules if m not in included]


def _walk(r: Resolver, module: str, prefix: str, out: list[Endpoint],
          stack: tuple[str, ...], a: Analysis, url_list: str | None = None) -> None:
    """The endpoints of one list of a urls module (``urlpatterns`` unless an include names
    another); a module without ``urlpatterns`` has every list nobody includes walked."""
    f: FileFacts = r.modules[module]
    lists = {u.list for u in f.urls if u.list} | {name for name, _ in f.url_splices}
    if url_list is None and "urlpatterns" in lists:
        url_list = "urlpatterns"
    key = f"{module}:{url_list or ''}"
    if key in stack or len(stack) > 10:
        return
    stack = (*stack, key)
    if url_list is None:  # no urlpatterns: the facts outside any list, and the lists' roots
        used = {u.include[1:] for u in f.urls if u.include and u.include.startswith("@")}
        used |= {spliced for _, spliced in f.url_splices}
        facts = [u for u in f.urls if u.list is None or u.list not in used]
        splices = [s for name, s in f.url_splices if name not in used]
    else:
        facts = [u for u in f.urls if u.list == url_list]
        splices = [s for name, s in f.url_splices if name == url_list]
    for u in facts:
        template, is_regex = route_template(u.route, u.regex)
        full = prefix + template
        if u.include and u.include.startswith("@"):
            _names(r, f, u.include[1:], full, out, stack, a, lists, fallback=True)
        elif u.include:
            target = r.module(u.include)
            if target is not None:
                _walk(r, target, full, out, stack, a)
        elif u.view:
            view = r.resolve(module, u.view) or f"{module}.{u.view}"
            out.append(Endpoint(full, view, u.name, f.path, u.line, regex=is_regex))
    for spliced in splices:
        _names(r, f, spliced, prefix, out, stack, a, lists, fallback=False)


def _names(r: Resolver, f: FileFacts, name: str, prefix: str, out: list[Endpoint],
           stack: tuple[str, ...], a: Analysis, lists: set[str], fallback: bool) -> None:
    """What a name included (``include(api)``, ``include(router.urls)``) or spliced into a
    list (``*router.urls``, ``+ api``) holds: a list of this module, a router's URLs, or a
    list of the module it is imported from. Only an include of a name nothing explains
    falls back to every router of the module."""
    if name in lists:
        _walk(r, f.module, prefix, out, stack, a, name)
        return
    router = name[: -len(".urls")] if name.endswith(".urls") else None
    if router is not None and any(x.router == router for x in f.routers):
        _routers(f, router, prefix, out, r)
        return
    whole = r.resolve(f.module, name)
    if whole is not None and whole in r.modules and whole != f.module:
        _walk(r, whole, prefix, out, stack, a)  # include(api_urls), a module object
        return
    target = r.resolve(f.module, router or name)
    owner, _, attr = (target or "").rpartition(".")
    if owner in r.modules and owner != f.module:
        g = r.modules[owner]
        if router is not None and any(x.router == attr for x in g.routers):
            _routers(g, attr, prefix, out, r)
            return
        if router is None and (any(u.list == attr for u in g.urls)
                               or any(x == attr for x, _ in g.url_splices)):
            _walk(r, owner, prefix, out, stack, a, attr)
            return
    if fallback and f.routers:
        _routers(f, (router or name).rsplit(".", 1)[0], prefix, out, r)


def _routers(f: FileFacts, router: str, prefix: str, out: list[Endpoint], r: Resolver) -> None:
    regs: list[RouterFact] = [x for x in f.routers if x.router == router] or list(f.routers)
    for reg in regs:
        view = r.resolve(f.module, reg.viewset) or f"{f.module}.{reg.viewset}"
        base = prefix + reg.prefix.strip("^$/") + "/"
        out.append(Endpoint(base, view, None, f.path, reg.line,
                            methods=VIEWSET_METHODS["list"]))
        out.append(Endpoint(base + "{pk}/", view, None, f.path, reg.line,
                            methods=VIEWSET_METHODS["detail"]))


def _view_models(view: str, direct: dict[str, set[str]], by_unit: dict[str, set[str]]
                 ) -> set[str]:
    """Models the view uses, directly or one project call away."""
    models: set[str] = set(direct.get(view, ())) | by_unit.get(view, set())
    owner = view
    while not models and "." in owner:
        owner = owner.rpartition(".")[0]  # a method of a view class: use the class
        models = set(direct.get(owner, ())) | by_unit.get(owner, set())
    return models
