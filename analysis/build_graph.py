"""Pass 8: the weighted model graph, each edge keeping its signals and evidence.

Signals (weights in :class:`analysis.state.Weights`, documented in docs/analysis.md):

* ``relations``: foreign keys, one-to-one, many-to-many, ``through=``, generic relations,
  multi-table and proxy inheritance;
* ``usage``: models named together by one unit of code (view, serializer, task, signal
  handler, manager), and, more weakly, by one module;
* ``sql``: tables read or written together by one request (or one transaction, or one
  statement when the log has neither), and, stronger, tables *written* together;
* ``app`` (only without ``--ignore-app-boundaries``): same app label, same file.

Hubs (a model with far more neighbours than the median: the user model, tags, audit
logs) are damped so they do not glue contexts together; they are reported as
shared-kernel candidates.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import replace
from itertools import combinations
from statistics import median

import networkx as nx

from analysis.state import Analysis, Weights

MAX_EVIDENCE = 4


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
    if "relations" in signals:
        _relations(a, edges, w)
    if "usage" in signals:
        _usage(a, edges, w)
    if "sql" in signals:
        _sql(a, edges, w, tables)
    if not a.options.ignore_app_boundaries:
        _app(a, edges, w)
    graph, hubs = _to_graph(nodes, edges, w)
    return replace(a, graph=graph, hubs=hubs, table_models=tables)


def _relations(a: Analysis, edges: _Edges, w: Weights) -> None:
    for rel in a.relations:
        weight = getattr(w, rel.kind, w.fk)
        via = f" (from {rel.inherited_from})" if rel.inherited_from else ""
        edges.add(rel.source, rel.target, "relations", weight,
                  f"{rel.path}:{rel.line} {rel.source}.{rel.field} -> {rel.target} "
                  f"[{rel.kind}]{via}")


def _usage(a: Analysis, edges: _Edges, w: Weights) -> None:
    per_module: dict[str, set[str]] = defaultdict(set)
    where: dict[str, str] = {}
    for u in a.usages:
        edges.clique(set(u.models), "usage", w.usage, f"{u.path}:{u.line} {u.unit}",
                     w.max_unit_models)
        per_module[u.module] |= set(u.models)
        where.setdefault(u.module, u.path)
    for module, models in per_module.items():
        edges.clique(models, "usage", w.module, f"{where[module]} (module {module})",
                     w.max_unit_models)


def _sql(a: Analysis, edges: _Edges, w: Weights, tables: dict[str, tuple[str, ...]]) -> None:
    for (endpoint, reads, writes), count in a.sql.request_shapes.items():
        touched = {m for t in reads | writes for m in tables.get(t, ())}
        written = {m for t in writes for m in tables.get(t, ())}
        scale = math.log2(1 + count)
        why = f"{endpoint or 'statement'}: {', '.join(sorted(reads | writes))[:120]}"
        edges.clique(touched, "sql", w.sql_coaccess * scale, why, w.max_unit_models)
        edges.clique(written, "sql", w.shared_write * scale, f"writes together: {why}",
                     w.max_unit_models)


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


def _to_graph(nodes: set[str], edges: _Edges, w: Weights) -> tuple[nx.Graph, dict[str, float]]:
    degree: dict[str, int] = defaultdict(int)
    for u, v in edges.weight:
        degree[u] += 1
        degree[v] += 1
    typical = max(median(degree.values()) if degree else 1.0, 2.0)
    threshold = w.hub_factor * typical
    hubs = {n: d / typical for n, d in degree.items() if d > threshold and d >= 4}
    graph = nx.Graph()
    graph.add_nodes_from(sorted(nodes))
    for (u, v), per in sorted(edges.weight.items()):
        damp = 1.0
        for n in (u, v):
            if n in hubs:
                damp *= math.sqrt(threshold / degree[n])
        total = sum(per.values()) * damp
        graph.add_edge(u, v, weight=total, signals=per, evidence=edges.evidence[(u, v)])
    return graph, hubs
