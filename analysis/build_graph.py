"""Pass 8: the weighted model graph, each edge keeping its signals and evidence.

Signals (weights in :class:`analysis.state.Weights`, documented in docs/analysis.md):

* ``relations``: foreign keys, one-to-one, many-to-many, ``through=``, generic relations,
  multi-table and proxy inheritance;
* ``usage``: models named together by one unit of code (view, serializer, task, signal
  handler, manager), and, more weakly, by one module;
* ``sql``: tables read or written together by one request (or one transaction, or one
  statement when the log has neither), and, stronger, tables *written* together;
* ``app`` (only without ``--ignore-app-boundaries``): same app label, same file.

Relations are weighed by what they say about aggregates: a non-null ``CASCADE`` key makes
a row part of its target, a nullable or ``PROTECT``/``SET_NULL`` key only references
another aggregate (``Weights.reference``). Hubs (a model that far more keys point at than
the median: the user model) have those incoming keys damped, except from their own parts,
so they do not glue contexts together; hubs are reported as shared-kernel candidates.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import replace
from itertools import combinations
from statistics import median
from typing import TYPE_CHECKING

from analysis.state import Analysis, Weights

if TYPE_CHECKING:
    import networkx as nx

MAX_EVIDENCE = 4
IDF_FLOOR = 0.05
HUB_SHARE = 0.5  # a model in more than this share of units or endpoints is a hub


class _Edges:
    """Accumulates weight per (pair, signal) and a little evidence per pair."""

    def __init__(self, nodes: set[str]) -> None:
        self.nodes = nodes
        self.weight: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
        self.evidence: dict[tuple[str, str], list[str]] = defaultdict(list)

    def add(self, u: str, v: str, signal: str, w: float, why: str) -> None:
        if u == v or u not in self.nodes or v not in self.nodes or w <= 0:
            return
        key = (u, v) if u < v else (v, u)
        per = self.weight[key]
        per[signal] = per.get(signal, 0.0) + w
        ev = self.evidence[key]
        if len(ev) < MAX_EVIDENCE and why not in ev:
            ev.append(why)

    def clique(self, models: set[str], signal: str, w: float, why: str, cap: int) -> None:
        k = len(models)
        if k < 2:
            return
        share = w / (min(k, cap) - 1) * (min(k, cap) / k)
        for u, v in combinations(sorted(models), 2):
            self.add(u, v, signal, share, why)


def table_models(a: Analysis) -> dict[str, tuple[str, ...]]:
    """Table name -> the models it stores (an auto many-to-many table maps to both ends)."""
    out: dict[str, tuple[str, ...]] = {}
    for m in a.models.values():
        if not m.abstract and not m.proxy:
            out.setdefault(m.table.lower(), (m.key,))
    for table, (src, tgt) in a.m2m_tables.items():
        out.setdefault(table, (src, tgt))
    return out


def build_graph(a: Analysis) -> Analysis:
    """Model graph from the enabled signals, hubs damped."""
    w = a.options.weights
    nodes = {m.key for m in a.models.values() if not m.abstract}
    edges = _Edges(nodes)
    tables = table_models(a)
    signals = a.options.signals
    hubs = _relation_hubs(a, w)
    if "relations" in signals:
        _relations(a, edges, w, hubs)
    common: dict[str, float] = {}
    if "usage" in signals:
        common.update(_common(_usage(a, edges, w), len(a.usages)))
    if "sql" in signals:
        common.update(_common(_sql(a, edges, w, tables), len(a.sql.request_shapes)))
    for m, score in common.items():  # a relation hub keeps its own (in-degree) score
        hubs.setdefault(m, score)
    if not a.options.ignore_app_boundaries:
        _app(a, edges, w)
    return replace(a, graph=_to_graph(nodes, edges), hubs=hubs, table_models=tables)


def _common(idf: dict[str, float], groups: int) -> dict[str, float]:
    """Models in more than ``HUB_SHARE`` of the groups (their idf is low)."""
    if groups < 5:
        return {}
    cut = math.log(1 / HUB_SHARE) / math.log(1 + groups)
    return {m: round(1 - v, 3) for m, v in idf.items() if v < cut}


def _relation_hubs(a: Analysis, w: Weights) -> dict[str, float]:
    """Models that far more relations point at than the median (the user model)."""
    indeg: dict[str, int] = defaultdict(int)
    for rel in a.relations:
        if rel.kind in ("fk", "o2o", "m2m") and rel.source != rel.target:
            indeg[rel.target] += 1
    if not indeg:
        return {}
    typical = max(median(indeg.values()), 1.0)
    return {m: d / typical for m, d in indeg.items() if d >= max(4, w.hub_factor * typical)}


def dependents(a: Analysis) -> dict[str, str]:
    """Models whose one and only relation is a part-of foreign key (non-null ``CASCADE``).

    An address that has nothing but its user is part of the user's aggregate; a review
    that also points at a product, or a message that also points at a template, is not
    part of the user alone. A one-to-one key does not make a part: it is how other apps
    extend a model (a profile, per-user preferences), each for its own feature.
    """
    targets: dict[str, set[tuple[str, bool]]] = defaultdict(set)
    for rel in a.relations:
        if rel.source != rel.target and rel.kind not in ("mti", "proxy"):
            part = rel.kind == "fk" and not rel.reference
            targets[rel.source].add((rel.target, part))
    return {m: t for m, ts in targets.items() if len(ts) == 1 for t, part in ts if part}


def _relations(a: Analysis, edges: _Edges, w: Weights, hubs: dict[str, float]) -> None:
    parts = dependents(a)
    for rel in a.relations:
        weight = getattr(w, rel.kind, w.fk) * (w.reference if rel.reference else 1.0)
        hub = hubs.get(rel.target)
        # Many models pointing at a hub tell little about where each belongs (like a common
        # word); the hub's own parts and the hub's own keys keep their weight.
        if hub is not None and parts.get(rel.source) != rel.target:
            weight /= max(1.0, hub / w.hub_factor) ** w.hub_power
        via = f" (from {rel.inherited_from})" if rel.inherited_from else ""
        edges.add(rel.source, rel.target, "relations", weight,
                  f"{rel.path}:{rel.line} {rel.source}.{rel.field} -> {rel.target} "
                  f"[{rel.kind}{', reference' if rel.reference else ''}]{via}")


def _idf(groups: list[set[str]]) -> dict[str, float]:
    """Inverse document frequency of each model over groups (units of code, endpoints).

    A model that every unit touches (the user model behind authentication, an audit log
    written everywhere) tells nothing about boundaries, like "the" in a text search.

    >>> idf = _idf([{"a", "u"}, {"b", "u"}, {"a", "u"}, {"b", "u"}])
    >>> idf["u"] < idf["a"] == idf["b"]
    True
    """
    df: dict[str, int] = defaultdict(int)
    for g in groups:
        for m in g:
            df[m] += 1
    n = len(groups)
    norm = math.log(1 + n) or 1.0
    return {m: max(IDF_FLOOR, math.log((1 + n) / (1 + d)) / norm) for m, d in df.items()}


def _weighted_clique(edges: _Edges, models: set[str], signal: str, w: float, why: str,
                     cap: int, idf: dict[str, float]) -> None:
    k = len(models)
    if k < 2:
        return
    share = w / (min(k, cap) - 1) * (min(k, cap) / k)
    for u, v in combinations(sorted(models), 2):
        edges.add(u, v, signal, share * idf.get(u, 1.0) * idf.get(v, 1.0), why)


def _usage(a: Analysis, edges: _Edges, w: Weights) -> dict[str, float]:
    idf = _idf([set(u.models) for u in a.usages])
    per_module: dict[str, set[str]] = defaultdict(set)
    where: dict[str, str] = {}
    for u in a.usages:
        _weighted_clique(edges, set(u.models), "usage", w.usage,
                         f"{u.path}:{u.line} {u.unit}", w.max_unit_models, idf)
        per_module[u.module] |= set(u.models)
        where.setdefault(u.module, u.path)
    for module, models in per_module.items():
        _weighted_clique(edges, models, "usage", w.module, f"{where[module]} (module {module})",
                         w.max_unit_models, idf)
    return idf


def _sql(a: Analysis, edges: _Edges, w: Weights, tables: dict[str, tuple[str, ...]]
         ) -> dict[str, float]:
    """Co-access per endpoint: a pair counts by the share of the endpoint's requests that
    touch both, so traffic volume does not decide coupling (a busy endpoint is not more
    coupled than a quiet one)."""
    groups: dict[str, list[tuple[set[str], set[str], int]]] = defaultdict(list)
    for i, ((endpoint, reads, writes), count) in enumerate(sorted(
            a.sql.request_shapes.items(), key=lambda kv: (str(kv[0][0]), sorted(kv[0][1]),
                                                          sorted(kv[0][2])))):
        touched = {m for t in reads | writes for m in tables.get(t, ())}
        written = {m for t in writes for m in tables.get(t, ())}
        groups[endpoint or f"statement {i}"].append((touched, written, count))
    idf = _idf([set().union(*(t for t, _, _ in shapes)) for shapes in groups.values()])
    for endpoint, shapes in groups.items():
        total = sum(c for _, _, c in shapes)
        for touched, written, count in shapes:
            share = count / total
            why = f"{endpoint}: {', '.join(sorted(touched))[:120]}"
            _weighted_clique(edges, touched, "sql", w.sql_coaccess * share, why,
                             w.max_unit_models, idf)
            _weighted_clique(edges, written, "sql", w.shared_write * share,
                             f"writes together: {why}", w.max_unit_models, idf)
    return idf


def _app(a: Analysis, edges: _Edges, w: Weights) -> None:
    by_app: dict[str, set[str]] = defaultdict(set)
    by_file: dict[str, set[str]] = defaultdict(set)
    for m in a.models.values():
        if not m.abstract:
            by_app[m.app_label].add(m.key)
            by_file[m.path].add(m.key)
    for label, models in by_app.items():
        edges.clique(models, "app", w.same_app, f"same app '{label}'", 10**6)
    for path, models in by_file.items():
        edges.clique(models, "app", w.same_file, f"same file {path}", 10**6)


def _to_graph(nodes: set[str], edges: _Edges) -> nx.Graph:
    import networkx as nx

    graph = nx.Graph()
    graph.add_nodes_from(sorted(nodes))
    for (u, v), per in sorted(edges.weight.items()):
        graph.add_edge(u, v, weight=sum(per.values()), signals=per,
                       evidence=edges.evidence[(u, v)])
    return graph
