"""Pass 10: coupling and cohesion metrics of the proposal, and where code and apps disagree.

Definitions (with references) are in docs/metrics.md. Structural metrics use the
*structural* edges (relations and code usage); data metrics use the SQL that was mined.
The realised number of contexts and their sizes are always reported beside them, since
one giant context games most coupling numbers.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import replace
from itertools import combinations
from typing import TYPE_CHECKING, Any

from analysis.context_access import code_access
from analysis.propose_contexts import endpoint_contexts
from analysis.state import Analysis

if TYPE_CHECKING:
    import networkx as nx

STRUCTURAL = ("relations", "usage")
RELATION_KINDS = ("fk", "o2o", "m2m", "through", "generic")


def _structural_weight(data: dict[str, Any]) -> float:
    return float(sum(data["signals"].get(s, 0.0) for s in STRUCTURAL))


def compute_metrics(a: Analysis) -> Analysis:
    """All metrics of docs/metrics.md, plus conflicts with the existing app split."""
    part = a.partition
    g: nx.Graph = a.graph
    sizes = Counter(part.values())
    metrics: dict[str, Any] = {
        "contexts": len(sizes),
        "context_sizes": [sizes[c] for c in sorted(sizes)],
        "models": len(a.graph.nodes) if g is not None else 0,
        "unplaced_models": sorted(n for n in g.nodes
                                  if n not in part and n not in a.infrastructure),
        "infrastructure_models": len(a.infrastructure),
        "modularity": round(_modularity(g, part), 4) if part else 0.0,
    }
    metrics.update(structural_metrics(g, part))
    metrics.update(data_metrics(a))
    return replace(a, metrics=metrics, conflicts=tuple(conflicts(a)))


def structural_metrics(g: nx.Graph, part: dict[str, int]) -> dict[str, Any]:
    """SM, ICP, IFN, NED and MQ of a partition over the structural edges."""
    k = len(set(part.values()))
    n = len(part)
    sizes = Counter(part.values())
    inner: Counter[int] = Counter()  # unweighted edge counts (SM)
    between: Counter[tuple[int, int]] = Counter()
    w_inner: dict[int, float] = defaultdict(float)  # weighted (ICP, MQ)
    w_cross: dict[int, float] = defaultdict(float)
    interfaces: dict[int, set[str]] = defaultdict(set)
    total = cross = 0.0
    for u, v, d in g.edges(data=True):
        w = _structural_weight(d)
        if w <= 0 or u not in part or v not in part:
            continue
        cu, cv = part[u], part[v]
        total += w
        if cu == cv:
            inner[cu] += 1
            w_inner[cu] += w
        else:
            cross += w
            between[(min(cu, cv), max(cu, cv))] += 1
            w_cross[cu] += w
            w_cross[cv] += w
            interfaces[cu].add(u)
            interfaces[cv].add(v)
    if k == 0:
        return {"sm": 0.0, "icp": 0.0, "ifn": 0.0, "ned": 1.0, "mq": 0.0}
    coh = sum(inner[c] / sizes[c] ** 2 for c in sizes) / k
    coup = (sum(e / (2 * sizes[a] * sizes[b]) for (a, b), e in between.items())
            / (k * (k - 1) / 2)) if k > 1 else 0.0
    lo, hi = 2, max(3, math.ceil(0.4 * n))
    in_bounds = sum(s for s in sizes.values() if lo <= s <= hi)
    mq = sum(2 * w_inner[c] / (2 * w_inner[c] + w_cross[c])
             for c in sizes if w_inner[c] + w_cross[c] > 0)
    return {
        "sm": round(coh - coup, 4),
        "icp": round(cross / total, 4) if total else 0.0,
        "ifn": round(sum(len(interfaces[c]) for c in sizes) / k, 4),
        "ned": round(1 - in_bounds / n, 4) if n else 1.0,
        "ned_bounds": [lo, hi],
        "mq": round(mq, 4),
        "mq_normalised": round(mq / k, 4),
    }


def data_metrics(a: Analysis) -> dict[str, Any]:
    """Tables shared between contexts, distributed writes and cross-context foreign keys."""
    part = a.partition
    owner = {t: part[ms[0]] for t, ms in a.table_models.items() if ms and ms[0] in part}
    ep_ctx = endpoint_contexts(a, part)
    readers: dict[str, set[int]] = defaultdict(set)
    writers: dict[str, set[int]] = defaultdict(set)
    for endpoint, access in a.sql.endpoint_tables.items():
        c = ep_ctx.get(endpoint)
        if c is None:
            continue
        for t in access["reads"] | access["writes"]:
            readers[t].add(c)
        for t in access["writes"]:
            writers[t].add(c)
    code = code_access(a)  # ORM usage by unit: evidence with or without a query log
    for t, cs in code.reads.items():
        readers[t] |= cs
    for t, cs in code.writes.items():
        readers[t] |= cs
        writers[t] |= cs
    plumbing = {a.models[m].table for m in a.infrastructure}  # no owner by design
    shared = sorted(t for t in readers if t not in plumbing
                    and len(readers[t] | {owner.get(t, -1)} - {-1}) > 1)
    shared_w = sorted(t for t in writers if t not in plumbing
                      and len(writers[t] | {owner.get(t, -1)} - {-1}) > 1)
    with_writes = spanning = 0
    for (_, _, writes), count in a.sql.request_shapes.items():
        ctxs = {owner[t] for t in writes if t in owner}
        if ctxs:
            with_writes += count
            spanning += count if len(ctxs) > 1 else 0
    cross_fk = [r for r in a.relations if r.kind in RELATION_KINDS
                and r.source in part and r.target in part and part[r.source] != part[r.target]]
    return {
        "tables_accessed_by_multiple_contexts": shared,
        "tables_written_by_multiple_contexts": shared_w,
        "data_evidence": "ORM usage in code + query log" if a.options.query_logs
        else "ORM usage in code (no query log)",
        "requests_with_writes": with_writes if a.options.query_logs else None,
        "distributed_write_share": (round(spanning / with_writes, 4) if with_writes else 0.0)
        if a.options.query_logs else None,  # needs requests: only a query log has them
        "cross_context_foreign_keys": len(cross_fk),
        "relations": sum(1 for r in a.relations if r.kind in RELATION_KINDS),
        "sql_statements": a.sql.statements,
        "sql_shapes": len(a.sql.shapes),
        "sql_unparsed_shapes": len(a.sql.unparsed),
    }


def conflicts(a: Analysis) -> list[dict[str, Any]]:
    """Where the proposal disagrees with the app split, with the edges that say why."""
    part = a.partition
    names = {c["id"]: c["name"] for c in a.contexts}
    by_app: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for m, c in sorted(part.items()):
        by_app[a.models[m].app_label][names[c]].append(m)
    out: list[dict[str, Any]] = []
    for app, split in sorted(by_app.items()):
        if len(split) > 1:
            out.append({"kind": "app_split", "app": app,
                        "contexts": dict(sorted(split.items())),
                        "why": _why_split(a, split)})
    for ctx in a.contexts:
        apps = Counter(a.models[m].app_label for m in ctx["models"])
        if len(apps) > 1:
            out.append({"kind": "context_spans_apps", "context": ctx["name"],
                        "apps": dict(sorted(apps.items())), "tangles": _tangles(a, ctx["models"])})
    return out


def _why_split(a: Analysis, split: dict[str, list[str]]) -> list[str]:
    """The strongest edges pulling the app's minority models into other contexts."""
    biggest = max(sorted(split), key=lambda k: len(split[k]))
    lines: list[str] = []
    for ctx, models in sorted(split.items()):
        if ctx == biggest:
            continue
        for m in models:
            for _, v, d in sorted(a.graph.edges(m, data=True), key=lambda e: -e[2]["weight"])[:1]:
                lines.append(f"{m} -> {v} ({', '.join(sorted(d['signals']))}): "
                             f"{d['evidence'][0] if d['evidence'] else ''}")
    return lines[:8]


def _tangles(a: Analysis, models: list[str]) -> list[dict[str, Any]]:
    """Cross-app edges inside one context, strongest first: the tangles that merged apps."""
    out = []
    for u, v in combinations(models, 2):
        if a.models[u].app_label != a.models[v].app_label and a.graph.has_edge(u, v):
            d = a.graph.edges[u, v]
            out.append({"between": [u, v], "weight": round(d["weight"], 3),
                        "signals": sorted(d["signals"]), "evidence": d["evidence"][:2]})
    return sorted(out, key=lambda t: -t["weight"])[:6]


def _modularity(g: nx.Graph, part: dict[str, int]) -> float:
    from analysis.clustering import modularity

    return modularity(g.subgraph(part), part)
