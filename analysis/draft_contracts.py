"""Pass 13: import-linter contracts that keep the proposed contexts apart, with a baseline.

One ``forbidden`` contract per context: its modules must not import the modules of any
other context. Today's direct imports across contexts are the baseline (``ignore_imports``),
so a new one fails CI at once while the old ones are burned down one by one (import-linter
reports a baseline line that no longer matches an import, so the list only shrinks).
Indirect imports are allowed: a chain through shared code is not a boundary breach until
the shared code is split.

A module that holds models of several contexts belongs to none: it is listed as a module
to split first (in the report and at the top of ``contracts.ini``), and left out of the
contracts until it is split.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from typing import Any

from analysis.extract_usage import is_domain_module
from analysis.state import Analysis


def draft_contracts(a: Analysis) -> Analysis:
    """Modules per context, modules to split first, and the baseline of cross imports."""
    names = {c["id"]: c["name"] for c in a.contexts}
    model_ctx: dict[str, set[str]] = defaultdict(set)  # module -> contexts of its models
    for key, cid in a.partition.items():
        model_ctx[a.models[key].qualname.rsplit(".", 1)[0]].add(names[cid])
    split_first = sorted(m for m, cs in model_ctx.items() if len(cs) > 1)
    claimed: dict[str, set[str]] = defaultdict(set)
    for c in a.contexts:
        for module in c["modules"]:
            if is_domain_module(module) and module in a.import_edges:
                claimed[module].add(c["name"])
    # import-linter's roots are packages: a module outside any (``manage.py``, a loose
    # ``testserver.py``) cannot be in a contract
    packaged = {m for m in a.import_edges if "." in m}
    owner = {m: next(iter(cs)) for m, cs in claimed.items()
             if len(cs) == 1 and m not in split_first and m in packaged}
    split_first = sorted(set(split_first) | {m for m, cs in claimed.items() if len(cs) > 1})
    modules: dict[str, set[str]] = defaultdict(set)
    for m, ctx in sorted(owner.items()):
        modules[ctx].add(_widest(m, ctx, owner, set(split_first), a.import_edges))
    # import-linter reads a package as the package and everything in it: a package whose
    # submodules belong to other contexts cannot stand in one context's contract
    left_out: list[str] = []
    for ctx, listed in modules.items():
        for name in sorted(listed):
            inside = [m for m in a.import_edges if m == name or m.startswith(name + ".")]
            if any(owner.get(m, ctx) != ctx or m in split_first for m in inside):
                listed.discard(name)
                left_out.append(name)
    # the baseline is taken over what the contracts cover: every project module inside a
    # context's (widened) modules, not only the modules the context was found to own
    covers = sorted(((m, ctx) for ctx, ms in modules.items() for m in ms),
                    key=lambda mc: len(mc[0]))  # the longest match is assigned last
    covered = {src: ctx for src in a.import_edges for m, ctx in covers
               if src == m or src.startswith(m + ".")}
    baseline: dict[str, list[list[str]]] = defaultdict(list)  # context -> [src, dst]
    for src, targets in sorted(a.import_edges.items()):
        for dst in sorted(targets):
            if src in covered and dst in covered and covered[dst] != covered[src]:
                baseline[covered[src]].append([src, dst])
    roots = sorted({m.split(".")[0] for m in owner})
    contracts = {"root_packages": roots,
                 "contexts": {k: sorted(v) for k, v in sorted(modules.items())},
                 "split_first": split_first, "left_out": sorted(left_out),
                 "baseline": dict(sorted(baseline.items()))}
    return replace(a, contracts=contracts)


def _widest(module: str, ctx: str, owner: dict[str, str], split: set[str],
            project: dict[str, set[str]]) -> str:
    """The highest package holding ``module`` whose modules are this context's or nobody's
    (so a module added there later is covered by the contract too).

    >>> _widest("a.b.c", "x", {"a.b.c": "x", "a.d": "y"}, set(), {"a": set(), "a.b": set(),
    ...         "a.b.c": set(), "a.d": set()})
    'a.b'
    """
    best = module
    parts = module.split(".")
    for i in range(len(parts) - 1, 0, -1):
        prefix = ".".join(parts[:i])
        inside = [m for m in project if m == prefix or m.startswith(prefix + ".")]
        if any(owner.get(m, ctx) != ctx or m in split for m in inside):
            break
        best = prefix
    return best


def contracts_ini(report: dict[str, Any]) -> str:
    """``contracts.ini`` for ``lint-imports --config contracts.ini``."""
    c = report["contracts"]
    lines = ["# Contracts for the contexts proposed by `strangler analyze`.",
             "# Run: lint-imports contracts.ini (from the project's import root).",
             "# ignore_imports is today's baseline: delete a line when its import is gone.",
             *[f"# split first (holds models of several contexts): {m}"
               for m in c["split_first"]],
             *[f"# left out (a package whose submodules belong to other contexts): {m}"
               for m in c.get("left_out", [])],
             "", "[importlinter]", "root_packages =", *[f"    {r}" for r in c["root_packages"]]]
    for name, modules in c["contexts"].items():
        others = [m for n, ms in c["contexts"].items() if n != name for m in ms]
        if not others:
            continue
        ignores = [f"    {src} -> {dst}" for src, dst in c["baseline"].get(name, [])]
        lines += ["", f"[importlinter:contract:context-{name}]",
                  f"name = Context {name} imports no other context's modules",
                  "type = forbidden", "source_modules =", *[f"    {m}" for m in modules],
                  "forbidden_modules =", *[f"    {m}" for m in others],
                  "allow_indirect_imports = True"]
        if ignores:
            lines += ["ignore_imports =", *ignores]
    return "\n".join(lines) + "\n"
