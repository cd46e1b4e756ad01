"""Community detection: deterministic per seed, ``--contexts`` and ``--resolution`` obeyed."""

from __future__ import annotations

import random
from pathlib import Path

import networkx as nx
import pytest

from analysis.clustering import adjusted_rand_index, partition_with, stable_partition
from analysis.errors import BadOption
from analysis.pipeline import PASSES, analyze
from analysis.propose_contexts import propose_contexts
from analysis.state import Options

UPTO = PASSES[: PASSES.index(propose_contexts) + 1]


def _planted(groups: int, size: int) -> tuple[nx.Graph, dict[str, int]]:
    g = nx.Graph()
    truth = {f"m{i}": i // size for i in range(groups * size)}
    nodes = sorted(truth)
    for i, u in enumerate(nodes):
        for v in nodes[i + 1:]:
            if truth[u] == truth[v]:
                g.add_edge(u, v, weight=1.0)
    for a in range(groups):  # a thin ring of cross-group links
        g.add_edge(f"m{a * size}", f"m{((a + 1) % groups) * size + 1}", weight=0.2)
    return g, truth


def test_stable_partition_recovers_planted_groups_and_records_every_cut() -> None:
    g, truth = _planted(6, 5)
    part, cuts = stable_partition(g, seed=0)
    assert adjusted_rand_index(truth, part) == 1.0
    assert sum(1 for c in cuts if c["chosen"]) == 1
    assert {"depth", "contexts", "stability", "modularity"} <= set(cuts[0])
    chosen = next(c for c in cuts if c["chosen"])
    assert chosen["contexts"] == 6
    assert {"mq", "sizes", "slivers"} <= set(chosen)
    assert chosen["sizes"] == [5] * 6
    assert chosen["slivers"] == 0
    # the alternatives beside it: the coarser levels of the search and, if it differs, a
    # finer Leiden cut; each with its quality, so a person can choose with --contexts N
    finer = [c for c in cuts if "resolution" in c]
    assert all(c["contexts"] > chosen["contexts"] and "modularity" in c for c in finer)


def test_divisive_search_keeps_random_groups_whole_and_splits_real_ones() -> None:
    # given 8 planted groups of 40 nodes, each a sparse random graph inside (which has a
    # high-modularity split of its own, found by any community algorithm)
    rng = random.Random(5)
    g = nx.Graph()
    truth = {f"n{i}": i // 40 for i in range(320)}
    for i in range(320):
        for _ in range(3):
            j = (i // 40) * 40 + rng.randrange(40) if rng.random() < 0.9 else rng.randrange(320)
            if i != j:
                g.add_edge(f"n{i}", f"n{j}", weight=rng.uniform(0.5, 2.0))
    # when the number of contexts is left to the data
    part, cuts = stable_partition(g, seed=0)
    # then the random insides are not split, the planted groups are found
    assert adjusted_rand_index(truth, part) >= 0.9, cuts
    assert 7 <= len(set(part.values())) <= 10


def test_partition_with_gives_exactly_the_asked_number() -> None:
    g, _ = _planted(6, 5)
    for n in (2, 4, 6, 9):
        assert len(set(partition_with(g, n, seed=0).values())) == n


def test_same_seed_same_proposal_and_flags_are_obeyed(sample_project: Path,
                                                      tmp_path: Path) -> None:
    def run(**kw: object) -> dict[str, int]:
        a = analyze(Options(root=sample_project, out=tmp_path, **kw),  # type: ignore[arg-type]
                    passes=UPTO)
        return a.partition

    assert run(seed=3) == run(seed=3)
    assert len(set(run(contexts=2).values())) == 2
    fine, coarse = run(resolution=5.0), run(resolution=0.2)
    assert len(set(fine.values())) > len(set(coarse.values()))


def test_zero_contexts_is_a_clear_error(sample_project: Path, tmp_path: Path) -> None:
    with pytest.raises(BadOption, match="--contexts 0"):
        analyze(Options(root=sample_project, out=tmp_path, contexts=0), passes=UPTO)
