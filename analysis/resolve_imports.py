"""Pass 3: the import graph between the project's own modules."""

from __future__ import annotations

from dataclasses import replace

from analysis.resolve import Resolver
from analysis.state import Analysis


def resolve_imports(a: Analysis) -> Analysis:
    """Module -> project modules it imports (``from a.b import C`` counts ``a.b``).

    External imports (django, stdlib) are dropped; only the project's seams matter here.
    """
    resolver = Resolver(a.facts)
    edges: dict[str, set[str]] = {}
    for f in a.facts:
        targets: set[str] = set()
        for name, _line in f.imported:
            mod = resolver.module(name) or resolver.module(name.rpartition(".")[0])
            if mod is not None and mod != f.module:
                targets.add(mod)
        edges[f.module] = targets
    return replace(a, modules=resolver.modules, import_edges=edges, resolve=resolver)
