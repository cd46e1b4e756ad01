"""Community detection on the model graph: Louvain, a stable resolution, cuts to size.

Louvain (networkx) is deterministic for a given seed. Without ``--contexts`` or
``--resolution`` the resolution is chosen from the data: for each resolution on a grid,
Louvain runs with several seeds. Each cut is scored by its *stability* (mean pairwise
adjusted Rand index between the seeds' partitions) times Bunch's MQ (the sum over
contexts of ``2 inner / (2 inner + cut)``), and the *coarsest* cut within
``PARSIMONY`` of the best score wins. Newman modularity is not the criterion: its
resolution limit merges small contexts (2-6 models, typical of Django apps) in dense
graphs; MQ rewards each well-separated context and gives one-model contexts nothing.
"""

from __future__ import annotations

from collections import Counter
from itertools import combinations
from math import comb
from typing import Any

import networkx as nx

RESOLUTIONS = (0.5, 0.7, 0.85, 1.0, 1.2, 1.4, 1.7, 2.0, 2.4, 2.8, 3.3, 4.0)
PARSIMONY = 0.9  # chosen on generated projects (docs/analysis.md), not on the demo

Partition = dict[str, int]


def adjusted_rand_index(a: dict[str, Any], b: dict[str, Any]) -> float:
    """Adjusted Rand index of two labellings over their common keys (1.0 = identical).

    >>> adjusted_rand_index({"x": 1, "y": 1, "z": 2}, {"x": "a", "y": "a", "z": "b"})
    1.0
    >>> round(adjusted_rand_index({"w": 1, "x": 1, "y": 2, "z": 2},
    ...                           {"w": 1, "x": 2, "y": 1, "z": 2}), 3)
    -0.5
    """
    keys = sorted(set(a) & set(b))
    n = len(keys)
    if n < 2:
        return 1.0
    pairs = Counter((a[k], b[k]) for k in keys)
    rows = Counter(a[k] for k in keys)
    cols = Counter(b[k] for k in keys)
    index = sum(comb(c, 2) for c in pairs.values())
    sum_rows = sum(comb(c, 2) for c in rows.values())
    sum_cols = sum(comb(c, 2) for c in cols.values())
    expected = sum_rows * sum_cols / comb(n, 2)
    maximum = (sum_rows + sum_cols) / 2
    if maximum == expected:
        return 1.0
    return (index - expected) / (maximum - expected)


def louvain(graph: nx.Graph, resolution: float, seed: int) -> Partition:
    """Louvain communities as ``node -> community index`` (largest community first)."""
    comms = nx.community.louvain_communities(
        graph, weight="weight", resolution=resolution, seed=seed)
    ordered = sorted(comms, key=lambda c: (-len(c), min(c)))
    return {n: i for i, c in enumerate(ordered) for n in c}


def modularity(graph: nx.Graph, part: Partition) -> float:
    """Newman modularity (weighted, resolution 1) of a partition."""
    if graph.number_of_edges() == 0:
        return 0.0
    groups: dict[int, set[str]] = {}
    for n, c in part.items():
        groups.setdefault(c, set()).add(n)
    return float(nx.community.modularity(graph, groups.values(), weight="weight"))


def bunch_mq(graph: nx.Graph, part: Partition) -> float:
    """Bunch's modularization quality: sum of ``2 inner / (2 inner + cut)`` per context."""
    inner: Counter[int] = Counter()
    cut: Counter[int] = Counter()
    for u, v, w in graph.edges(data="weight"):
        if part[u] == part[v]:
            inner[part[u]] += w
        else:
            cut[part[u]] += w
            cut[part[v]] += w
    return sum(2 * inner[c] / (2 * inner[c] + cut[c]) for c in inner if inner[c] > 0)


def stable_partition(graph: nx.Graph, seed: int) -> tuple[Partition, list[dict[str, Any]]]:
    """The coarsest stable, well-separated cut, and every cut tried (the dendrogram)."""
    nodes = graph.number_of_nodes()
    seeds = 5 if nodes <= 500 else 3 if nodes <= 3000 else 2
    grid = RESOLUTIONS if nodes <= 3000 else (1.0, 2.0, 4.0)
    cuts: list[dict[str, Any]] = []
    chosen_parts: list[Partition] = []
    for res in grid:
        parts = [louvain(graph, res, seed + i) for i in range(seeds)]
        agree = [adjusted_rand_index(p, q) for p, q in combinations(parts, 2)]
        stability = sum(agree) / len(agree) if agree else 1.0
        scored = [(bunch_mq(graph, p), -i, p) for i, p in enumerate(parts)]
        mq, _, chosen = max(scored, key=lambda t: (t[0], t[1]))
        cuts.append({"resolution": res, "contexts": len(set(chosen.values())),
                     "stability": round(stability, 4), "mq": round(mq, 4),
                     "modularity": round(modularity(graph, chosen), 4),
                     "score": round(stability * mq, 4), "chosen": False})
        chosen_parts.append(chosen)
    top = max(c["score"] for c in cuts)
    pick = min((i for i, c in enumerate(cuts) if c["score"] >= PARSIMONY * top),
               key=lambda i: (cuts[i]["contexts"], i))
    cuts[pick]["chosen"] = True
    return chosen_parts[pick], cuts


def partition_with(graph: nx.Graph, contexts: int, seed: int) -> Partition:
    """A partition with exactly ``contexts`` communities (when the graph allows it).

    Raises resolution until Louvain gives at least that many, then merges the most
    coupled pair (inter-community weight relative to size) until the count is right.
    """
    res = 0.5
    part = louvain(graph, res, seed)
    while len(set(part.values())) < contexts and res < 64:
        res *= 1.5
        part = louvain(graph, res, seed)
    while len(set(part.values())) > contexts:
        part = _merge_closest(graph, part)
    return part


def _merge_closest(graph: nx.Graph, part: Partition) -> Partition:
    sizes = Counter(part.values())
    between: Counter[tuple[int, int]] = Counter()
    for u, v, w in graph.edges(data="weight"):
        a, b = part[u], part[v]
        if a != b:
            between[(min(a, b), max(a, b))] += w
    if between:
        (a, b), _ = max(between.items(),
                        key=lambda kv: (kv[1] / (sizes[kv[0][0]] * sizes[kv[0][1]]) ** 0.5,
                                        -kv[0][0], -kv[0][1]))
    else:  # no edges between: merge the two smallest
        a, b = sorted(sizes, key=lambda c: (sizes[c], c))[:2]
    merged = {n: (a if c == b else c) for n, c in part.items()}
    order = {c: i for i, c in enumerate(sorted(set(merged.values()),
                                               key=lambda c: (-Counter(merged.values())[c], c)))}
    return {n: order[c] for n, c in merged.items()}


def dendrogram(graph: nx.Graph, resolution: float, seed: int) -> list[int]:
    """Community counts at each Louvain level (finest first): the coarser cuts on offer."""
    levels = nx.community.louvain_partitions(
        graph, weight="weight", resolution=resolution, seed=seed)
    return [len(level) for level in levels]
