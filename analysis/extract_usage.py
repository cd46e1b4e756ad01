"""Pass 5: which units of code (functions, classes, module bodies) use which models.

A unit uses a model when it names it (``Product.objects...``, ``serializers.Product``
through any import alias), asks for it (``apps.get_model("store", "Product")``,
``get_user_model()``), or reaches a project class or function that does, one step
away (a view's ``serializer_class`` brings the serializer's ``Meta.model``). Model
classes and migrations are not usage units: their references are relations, counted by
the model pass. Neither are tests, seed data, factories and fixtures: code that builds
rows for every model says nothing about where the boundaries are.
"""

from __future__ import annotations

import re
from dataclasses import replace

from analysis.facts import UnitFact, Usage
from analysis.resolve import Resolver
from analysis.state import Analysis

# Module path parts that mark code as tests, examples, seed data or migrations: whole
# words (``testcases`` is a domain word, ``test_utils`` is not), matched per dotted part.
NON_DOMAIN = re.compile(
    r"^(tests?|testing|test_\w*|\w+_tests?|testapps?|testproject\w*|testutils|conftest|"
    r"examples?|example_\w+|\w+_examples?|sandbox|demo_?project|project_template|"
    r"seeds?|seed_\w+|factories|factory|\w+_factories|fixtures|migrations|docs?)$")


def is_domain_module(module: str) -> bool:
    """False for tests, examples, seeds, factories, fixtures, docs and migrations.

    >>> is_domain_module("shop.orders.views"), is_domain_module("shop.tests.test_orders")
    (True, False)
    >>> is_domain_module("qa.testcases.models"), is_domain_module("cms.test_utils.app.models")
    (True, False)
    """
    return not any(NON_DOMAIN.match(part) for part in module.split("."))


def is_domain_file(module: str, path: str) -> bool:
    """:func:`is_domain_module` of the module and of the file's folders, which catch what
    the module name hides (an app inside a ``project_template/`` or ``tests/`` folder that
    is not a package is imported by its own name).

    >>> is_domain_file("home.models", "pkg/project_template/home/models.py")
    False
    """
    folders = path.replace("\\", "/").split("/")[:-1]
    return is_domain_module(module) and not any(NON_DOMAIN.match(p) for p in folders)


def extract_usage(a: Analysis) -> Analysis:
    """One :class:`Usage` per unit that touches at least one model."""
    r: Resolver = a.resolve
    by_qual = {m.qualname: m.key for m in a.models.values() if not m.abstract}
    direct = _direct_use(a, r, by_qual)
    model_classes = {m.qualname for m in a.models.values()}  # abstract ones too
    usages: list[Usage] = []
    for f in a.facts:
        if not is_domain_file(f.module, f.path):
            continue
        for u in f.units:
            unit = f"{f.module}.{u.name}"
            if unit in model_classes:
                continue
            models = set(direct.get(unit, ()))
            if u.kind != "module":  # a urls module names every view: no expansion there
                for ref in _project_refs(f.module, u, r):
                    if ref not in by_qual:  # a model's own references are its relations
                        models |= direct.get(ref, set())
            writes = {by_qual[q] for name in u.writes
                      if (q := r.resolve(f.module, name)) in by_qual}
            if models:
                usages.append(Usage(unit, f.path, u.line, tuple(sorted(models)), f.module,
                                    tuple(sorted(writes & models))))
    return replace(a, usages=tuple(usages), direct_use=direct)


def _direct_use(a: Analysis, r: Resolver, by_qual: dict[str, str]) -> dict[str, set[str]]:
    auth_user = a.auth_user
    keys = {k.lower(): k for k in by_qual.values()}
    out: dict[str, set[str]] = {}
    for f in a.facts:
        for u in f.units:
            found = {by_qual[q] for ref in u.refs if (q := r.resolve(f.module, ref)) in by_qual}
            for s in u.model_strings:
                name = auth_user if s.startswith("@") else s
                if name.lower() in keys:
                    found.add(keys[name.lower()])
            if found:
                out[f"{f.module}.{u.name}"] = found
    return out


def _project_refs(module: str, unit: UnitFact, r: Resolver) -> set[str]:
    """Project functions and classes a unit names (one step of the call graph)."""
    out: set[str] = set()
    for ref in unit.refs:
        if "." in ref and ref.count(".") > 1:
            continue
        q = r.resolve(module, ref)
        if q is not None and (q in r.defs):
            out.add(q)
    return out
