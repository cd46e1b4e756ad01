"""Community detection on the model graph: divisive Louvain, cuts to size.

Louvain (networkx) is deterministic for a given seed. Without ``--contexts`` or
``--resolution`` the number of contexts comes from the data, top down: Louvain at the
standard resolution splits the graph; each community is then split again, on its own
subgraph, for as long as its best split has modularity of at least ``Q_MIN`` *within that
community* (structure well above what its own degrees would give by chance). One global
resolution treats a loose group of two domains (glued by a shared model) and a tight
two-model aggregate alike; the recursion asks each community separately, so the first is
split and the second kept. Each level of the recursion is a cut in the dendrogram the
report offers. On graphs up to ``SEEDED_UP_TO`` nodes the whole search runs with three
seeds and the most central result (highest mean adjusted Rand index to the others) wins;
that mean is reported as the proposal's stability.
"""

from __future__ import annotations

from collections import Counter
from math import comb
from typing import Any

import networkx as nx

Q_MIN = 0.2  # generated projects score the same from 0.2 to 0.25 (docs/analysis.md)
MIN_SPLIT = 4  # communities smaller than this are kept whole
MAX_DEPTH = 8
SEEDED_UP_TO = 3000  # nodes; above this one seed (a 10,000-node search then takes ~3 s)

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
    """The divisive Louvain partition, and its cuts (one per recursion depth; the chosen
    one is the deepest).

    With several seeds, the result closest to the others is kept (their mean adjusted
    Rand index is the ``stability`` of every cut).
    """
    seeds = 3 if graph.number_of_nodes() <= SEEDED_UP_TO else 1
    runs = [divide(graph, seed + i) for i in range(seeds)]
    finals = [levels[-1] for levels in runs]
    agree = [[adjusted_rand_index(p, q) if p is not q else 1.0 for q in finals] for p in finals]
    central = [sum(row) / len(row) for row in agree]
    best = max(range(seeds), key=lambda i: (central[i], -i))
    stability = (sum(central) * seeds - seeds) / (seeds * seeds - seeds) if seeds > 1 else 1.0
    cuts = [{"depth": depth, "contexts": len(set(part.values())),
             "modularity": round(modularity(graph, part), 4),
             "mq": round(bunch_mq(graph, part), 4), "stability": round(stability, 4),
             "seeds": seeds, "q_min": Q_MIN, "chosen": False}
            for depth, part in enumerate(runs[best])]
    cuts[-1]["chosen"] = True
    return finals[best], cuts


def divide(graph: nx.Graph, seed: int) -> list[Partition]:
    """Partitions after each level of the divisive search, coarsest first.

    >>> g = nx.Graph()
    >>> for group in range(3):
    ...     nodes = [f"{group}-{i}" for i in range(5)]
    ...     g.add_edges_from((u, v, {"weight": 1.0}) for u in nodes for v in nodes if u < v)
    >>> g.add_edge("0-0", "1-0", weight=0.1); g.add_edge("1-1", "2-0", weight=0.1)
    >>> [len(set(p.values())) for p in divide(g, 0)]
    [3]
    """
    groups = [set(graph.nodes)]
    levels: list[Partition] = []
    for _ in range(MAX_DEPTH):
        split = [_split(graph.subgraph(g), seed) for g in groups]
        if levels and all(len(parts) == 1 for parts in split):
            break
        groups = [part for parts in split for part in parts]
        levels.append(_numbered(groups))
        if all(len(parts) == 1 for parts in split):
            break
    return levels


def _split(sub: nx.Graph, seed: int) -> list[set[str]]:
    """The community's Louvain split if it is a clear one, else the community whole."""
    if sub.number_of_nodes() < MIN_SPLIT or sub.number_of_edges() == 0:
        return [set(sub.nodes)]
    comms = nx.community.louvain_communities(sub, weight="weight", resolution=1.0, seed=seed)
    if len(comms) < 2:
        return [set(sub.nodes)]
    if nx.community.modularity(sub, comms, weight="weight") < Q_MIN:
        return [set(sub.nodes)]
    return [set(c) for c in comms]


def _numbered(groups: list[set[str]]) -> Partition:
    ordered = sorted(groups, key=lambda c: (-len(c), min(c)))
    return {n: i for i, c in enumerate(ordered) for n in c}


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
