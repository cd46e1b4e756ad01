"""Pass 9: communities of the model graph become proposed bounded contexts.

Each context gets a suggested name (its app label when it is exactly one app, else its
aggregate root: the model most referenced from inside it),
its models, tables, modules and endpoints, the evidence for each model (strongest edges
inside), and its *ambiguous* models (tied nearly as strongly to another context).
A model with no edge at all (no relation to a project model, never used together with
another) is a context of its own, marked ``isolated``: nothing ties it to the rest, and
on real projects such a model is nearly always an app of its own (icons, menus, a
settings table); the report says that no evidence placed it.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from analysis.errors import BadOption
from analysis.state import Analysis

if TYPE_CHECKING:
    import networkx as nx

AMBIGUOUS_RATIO = 0.75


def propose_contexts(a: Analysis) -> Analysis:
    """Partition the graph and describe each part."""
    from analysis.clustering import leiden, partition_with, stable_partition

    g: nx.Graph = a.graph
    placed = g.subgraph([n for n in g.nodes if n not in a.infrastructure])
    connected = placed.subgraph([n for n in placed.nodes if placed.degree(n) > 0]).copy()
    o = a.options
    if o.contexts is not None and o.contexts < 1:
        raise BadOption(f"--contexts {o.contexts}: must be 1 or more")
    a.options.progress("cluster", 0, 1)
    if connected.number_of_nodes() == 0:
        part: dict[str, int] = {}
        cuts: list[dict[str, Any]] = []
    elif o.contexts is not None:  # the isolated models are contexts too: ask for the rest
        lone = placed.number_of_nodes() - connected.number_of_nodes()
        part = partition_with(connected, max(1, o.contexts - lone), o.seed)
        cuts = [{"contexts": o.contexts, "requested": True}]
    elif o.resolution is not None:
        part = leiden(connected, o.resolution, o.seed)
        cuts = [{"resolution": o.resolution, "contexts": len(set(part.values())),
                 "chosen": True}]
    else:
        part, cuts = stable_partition(connected, o.seed)
    part = _with_isolated(part, [n for n in sorted(placed.nodes) if placed.degree(n) == 0])
    a.options.progress("cluster", 1, 1)
    part, forced, warnings = _decide(a, part)
    contexts = _describe(a, part, forced)
    realised = len(set(part.values()))
    if o.contexts is not None and realised != o.contexts:
        lone = sum(1 for c in contexts if c["isolated"])
        warnings += (f"--contexts {o.contexts} cannot be met: the graph gives {realised} "
                     f"({lone} of them models with no tie to any other, each a context of "
                     f"its own; the rest cannot be cut into more parts than models, nor "
                     f"fewer than its connected groups)",)
    return replace(a, partition=part, cuts=tuple(cuts), contexts=tuple(contexts),
                   warnings=warnings)


def _decide(a: Analysis, part: dict[str, int]
            ) -> tuple[dict[str, int], dict[int, str], tuple[str, ...]]:
    """A person's pins, merges and names (analysis/decisions.py), applied to the proposal."""
    from analysis.decisions import apply_merges, apply_pins, check_models

    d = a.options.decisions
    warnings = a.warnings
    if not d:
        return part, {}, warnings
    check_models(d, {k for k, m in a.models.items() if not m.abstract})
    part, forced = apply_pins(part, _names(a, _members(part)), d.pins)
    if d.merge:
        names = _names(a, _members(part), forced)
        part, merged, problems = apply_merges(part, names, d.merge)
        forced.update(merged)
        warnings += tuple(problems)
    order = {c: i for i, c in enumerate(sorted(set(part.values())))}
    part = {m: order[c] for m, c in part.items()}
    forced = {order[c]: n for c, n in forced.items() if c in order}
    names = _names(a, _members(part), forced)
    known = set(names.values())
    warnings += tuple(f"--contexts-file names {old}: no proposed context is called {old!r}"
                      for old, _ in d.names if old not in known)
    renames = dict(d.names)
    return part, {c: renames.get(n, n) for c, n in names.items()}, warnings


def _members(part: dict[str, int]) -> dict[int, list[str]]:
    members: dict[int, list[str]] = defaultdict(list)
    for n, c in part.items():
        members[c].append(n)
    return members


def _with_isolated(part: dict[str, int], isolated: list[str]) -> dict[str, int]:
    """Each model with no edge becomes a one-model context, numbered after the others."""
    out = dict(part)
    start = max(part.values(), default=-1) + 1
    for i, n in enumerate(isolated):
        out[n] = start + i
    return out


def _describe(a: Analysis, part: dict[str, int], forced: dict[int, str]
              ) -> list[dict[str, Any]]:
    g: nx.Graph = a.graph
    members = _members(part)
    endpoints = endpoint_contexts(a, part)
    names = _names(a, members, forced)
    out = []
    for c in sorted(members):
        models = sorted(members[c])
        tables = {a.models[m].table.lower() for m in models if not a.models[m].proxy}
        out.append({
            "id": c,
            "name": names[c],
            "models": models,
            "tables": sorted({a.models[m].table for m in models if not a.models[m].proxy}
                             | {t for t, ms in a.table_models.items()
                                if len(ms) == 2 and part.get(ms[0]) == c}),
            "modules": _modules(a, set(models)),
            "endpoints": sorted(t for t, ctx in endpoints.items() if ctx == c),
            # query-log route patterns whose requests touch this context's tables
            "use_cases": sorted(e for e, acc in a.sql.endpoint_tables.items()
                                if not e.startswith("code:")
                                and (acc["reads"] | acc["writes"]) & tables),
            "evidence": {m: _strongest(g, m, part, same=True) for m in models},
            "ambiguous": _ambiguous(g, models, part),
            "shared_kernel_candidates": sorted(
                m for m in models if m in a.hubs or m in a.generic_models),
            "isolated": len(models) == 1 and g.degree(models[0]) == 0,
        })
    return out


def _names(a: Analysis, members: dict[int, list[str]],
           forced: dict[int, str] | None = None) -> dict[int, str]:
    """Name each context: its app label when it is exactly that app, else its root model.

    The root is the aggregate root the context is built around: the model most referenced
    by keys from inside the context (``OrderLine.order`` and ``Shipment.order`` make
    ``Order`` the root of theirs), ties broken by edge weight inside the context.
    """
    placed = {m for ms in members.values() for m in ms}
    app_models: dict[str, set[str]] = defaultdict(set)
    for key, m in a.models.items():
        if key in placed:
            app_models[m.app_label].add(key)
    forced = forced or {}
    used: Counter[str] = Counter(forced.values())
    names: dict[int, str] = dict(forced)
    for c in sorted(members, key=lambda c: (-len(members[c]), c)):
        if c in forced:
            continue
        models = set(members[c])
        labels = {a.models[m].app_label for m in models}
        label = next(iter(labels))
        base = label if len(labels) == 1 and app_models[label] == models and not used[
            label] else aggregate_root(a, models).split(".")[1]
        base = snake_name(base)
        used[base] += 1
        names[c] = base if used[base] == 1 else f"{base}_{used[base]}"
    return names


def snake_name(name: str) -> str:
    """A context name from a model or app name; acronyms stay whole.

    >>> snake_name("VLANGroup"), snake_name("TestCase"), snake_name("HTTPAPIToken")
    ('vlan_group', 'test_case', 'httpapi_token')
    >>> snake_name("IPAddress"), snake_name("misago_users")
    ('ip_address', 'misago_users')
    """
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name)
    return re.sub(r"[^a-z0-9_]+", "_", spaced.lower()).strip("_") or "context"


def aggregate_root(a: Analysis, models: set[str]) -> str:
    """The model of ``models`` that most keys from inside ``models`` point at."""
    g: nx.Graph = a.graph
    refs: Counter[str] = Counter(
        r.target for r in a.relations
        if r.kind in ("fk", "o2o", "m2m", "through") and r.source in models
        and r.target in models and r.source != r.target)
    return max(sorted(models), key=lambda m: (
        refs[m], sum(w for _, v, w in g.edges(m, data="weight") if v in models)))


def _modules(a: Analysis, models: set[str]) -> list[str]:
    """Modules that define these models or mostly use them."""
    out = {a.models[m].qualname.rsplit(".", 1)[0] for m in models}
    per_module: dict[str, Counter[bool]] = defaultdict(Counter)
    for u in a.usages:
        for m in u.models:
            per_module[u.module][m in models] += 1
    out |= {mod for mod, c in per_module.items() if c[True] > c[False]}
    return sorted(out)


def endpoint_contexts(a: Analysis, part: dict[str, int]) -> dict[str, int]:
    """Endpoint template -> the context whose models (code) and tables (SQL) it uses most."""
    votes: dict[str, Counter[int]] = defaultdict(Counter)
    for template, models in a.endpoint_models.items():
        for m in models:
            if m in part:
                votes[template][part[m]] += 1
    for endpoint, access in a.sql.endpoint_tables.items():
        if endpoint.startswith("code:"):
            continue
        for table in access["writes"]:
            for m in a.table_models.get(table, ()):
                if m in part:
                    votes[endpoint][part[m]] += 2
        for table in access["reads"]:
            for m in a.table_models.get(table, ()):
                if m in part:
                    votes[endpoint][part[m]] += 1
    for e in a.endpoints:
        votes.setdefault(e.template, Counter())
    return {t: max(sorted(v), key=lambda c: v[c]) for t, v in votes.items() if v}


def _strongest(g: nx.Graph, m: str, part: dict[str, int], same: bool) -> list[dict[str, Any]]:
    edges = sorted(((w, v, d) for _, v, d in g.edges(m, data=True)
                    for w in [d["weight"]] if (part.get(v) == part.get(m)) == same),
                   key=lambda t: (-t[0], t[1]))[:3]
    return [{"model": v, "weight": round(w, 3), "signals": {k: round(x, 3)
             for k, x in d["signals"].items()}, "evidence": d["evidence"][:2]}
            for w, v, d in edges]


def tie_strength(g: nx.Graph, m: str, part: dict[str, int]) -> Counter[int]:
    """Total edge weight from ``m`` into each context."""
    ties: Counter[int] = Counter()
    for _, v, w in g.edges(m, data="weight"):
        if v in part:
            ties[part[v]] += w
    return ties


def _ambiguous(g: nx.Graph, models: list[str], part: dict[str, int]) -> list[dict[str, Any]]:
    out = []
    for m in models:
        ties = tie_strength(g, m, part)
        own = ties.get(part[m], 0.0)
        other = [(w, c) for c, w in ties.items() if c != part[m]]
        if other and own > 0:
            w, c = max(other)
            if w >= AMBIGUOUS_RATIO * own:
                out.append({"model": m, "own": round(own, 3), "other_context": c,
                            "other": round(w, 3)})
    return out
