"""Benchmarks of the analysis, each beside its anchor, ratios printed.

    .venv/bin/python -m bench.analysis            # full sizes (about 5 minutes)
    .venv/bin/python -m bench.analysis --quick    # small sizes (under a minute)

1. end to end on a generated 1M-line tree (1,000 models, 3,000 modules): time, peak RSS
2. the import-graph stage against grimp's ``build_graph`` on the same tree
3. mining a 1M-statement log: fingerprinting vs parsing every statement (extrapolated)
4. clustering a 10,000-node graph: one networkx Louvain run, one igraph Leiden run, and
   the automatic (divisive) search
5. the cache: second run over the unchanged tree
6. signal ablation: relations only, + code usage, + SQL, against an FK-only Louvain baseline
7. ``--corpus``: real Django projects, pinned, against an independent model counter
   (:mod:`bench.analysis.corpus`); ``--unseen`` runs the two kept out of the corpus
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.analysis.generate import generate_log, generate_project

ROOT = Path(__file__).resolve().parents[2]


def _peak_child_mb() -> float:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def end_to_end(work: Path, models: int, lines: int) -> dict[str, Any]:
    contexts = max(4, models // 6)
    started = time.perf_counter()
    project = generate_project(work / "tree", contexts=contexts, models_per_context=(5, 7),
                               modules_per_context=3, target_lines=lines, seed=7)
    gen = time.perf_counter() - started
    cmd = [sys.executable, "-m", "strangler.cli", "analyze", str(work / "tree"),
           "--out", str(work / "out"), "--ignore-app-boundaries", "--json"]
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT)
    cold = time.perf_counter() - started
    peak = _peak_child_mb()
    started = time.perf_counter()
    subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT)
    warm = time.perf_counter() - started
    summary = json.loads(done.stdout)
    return {"files": project.files, "lines": project.lines, "models": len(project.truth),
            "generate_s": round(gen, 1), "analyze_s": round(cold, 2),
            "peak_rss_mb": round(peak), "contexts": len(summary["contexts"]),
            "second_run_s": round(warm, 2), "cache_speedup": round(cold / warm, 1)}


def import_stage(tree: Path) -> dict[str, Any]:
    import grimp

    from analysis.collect_files import collect_files
    from analysis.parse_files import parse_files
    from analysis.resolve_imports import resolve_imports
    from analysis.state import Analysis, Options

    packages = sorted(p.name for p in tree.iterdir() if (p / "__init__.py").exists())
    sys.path.insert(0, str(tree))
    try:
        started = time.perf_counter()
        graph = grimp.build_graph(*packages, cache_dir=None)
        grimp_s = time.perf_counter() - started
    finally:
        sys.path.remove(str(tree))
    a = collect_files(Analysis(Options(root=tree, out=tree.parent / "imp",
                                       cache_dir=tree.parent / "imp-cache")))
    started = time.perf_counter()
    a = parse_files(a)
    parse_s = time.perf_counter() - started
    started = time.perf_counter()
    a = resolve_imports(a)
    resolve_s = time.perf_counter() - started
    ours = sum(len(v) for v in a.import_edges.values())
    return {"grimp_build_graph_s": round(grimp_s, 2), "grimp_modules": len(graph.modules),
            "ours_parse_all_facts_s": round(parse_s, 2), "ours_resolve_imports_s":
            round(resolve_s, 3), "ours_import_edges": ours,
            "ratio_parse_plus_resolve_vs_grimp": round((parse_s + resolve_s) / grimp_s, 2),
            "ratio_resolve_only_vs_grimp": round(resolve_s / grimp_s, 3)}


def log_mining(work: Path, statements: int) -> dict[str, Any]:
    from analysis.extract_tables import extract_tables
    from analysis.mine_sql import _Miner
    from analysis.read_logs import read_query_log

    project = generate_project(work / "logtree", contexts=40, seed=9)
    log = work / "big.jsonl"
    generate_log(log, project, statements, seed=9)
    started = time.perf_counter()
    miner = _Miner("postgres", {}, lambda *_: None)
    miner.consume(read_query_log(log))
    mined = time.perf_counter() - started
    sample = [s.sql for _, s in zip(range(2000), read_query_log(log), strict=False)]
    started = time.perf_counter()
    for sql in sample:
        extract_tables(sql, "postgres")
    per = (time.perf_counter() - started) / len(sample)
    naive = per * miner.summary.statements
    return {"statements": miner.summary.statements, "shapes": len(miner.summary.shapes),
            "mine_s": round(mined, 2), "parse_every_statement_s_extrapolated": round(naive, 1),
            "speedup": round(naive / mined, 1)}


def clustering(nodes: int) -> dict[str, Any]:
    import networkx as nx

    from analysis.clustering import adjusted_rand_index, leiden, louvain, stable_partition

    rng = random.Random(3)
    size = 100
    truth = {f"n{i}": i // size for i in range(nodes)}
    g = nx.Graph()
    g.add_nodes_from(truth)
    for i in range(nodes):
        for _ in range(4):
            j = (i // size) * size + rng.randrange(size) if rng.random() < 0.85 else \
                rng.randrange(nodes)
            if i != j:
                g.add_edge(f"n{i}", f"n{j}", weight=rng.uniform(0.5, 2.0))
    started = time.perf_counter()
    part = louvain(g, 1.0, 0)
    one = time.perf_counter() - started
    started = time.perf_counter()
    fast = leiden(g, 1.0, 0)
    one_leiden = time.perf_counter() - started
    started = time.perf_counter()
    auto, cuts = stable_partition(g, 0)
    search = time.perf_counter() - started
    return {"nodes": nodes, "edges": g.number_of_edges(),
            "networkx_louvain_once_s": round(one, 2),
            "ari_louvain_once": round(adjusted_rand_index(truth, part), 3),
            "igraph_leiden_once_s": round(one_leiden, 2),
            "ari_leiden_once": round(adjusted_rand_index(truth, fast), 3),
            "ratio_leiden_vs_louvain_time": round(one_leiden / one, 3),
            "auto_search_s": round(search, 2), "auto_depths": len(cuts),
            "auto_contexts": len(set(auto.values())),
            "ari_auto": round(adjusted_rand_index(truth, auto), 3)}


def ablation(work: Path, seeds: int) -> dict[str, Any]:
    from analysis.clustering import adjusted_rand_index, louvain
    from analysis.pipeline import PASSES, analyze
    from analysis.state import Options

    upto = PASSES[: [p.__name__ for p in PASSES].index("propose_contexts") + 1]
    rows: dict[str, list[float]] = {"fk_only_louvain": [], "relations": [],
                                    "relations+usage": [], "relations+usage+sql": []}
    cases = []
    for seed in range(seeds):
        project = generate_project(work / f"abl{seed}", contexts=8 + seed % 5, seed=100 + seed)
        log = work / f"abl{seed}.jsonl"
        generate_log(log, project, 3000, seed=100 + seed)
        cases.append((work / f"abl{seed}", {k: v for k, v in project.truth.items()
                                            if v != "shared"}, (log,)))
    mono = ROOT / "legacy_monolith"
    for root, truth, logs in cases:
        for name, sig, use_logs in (("relations", {"relations"}, ()),
                                    ("relations+usage", {"relations", "usage"}, ()),
                                    ("relations+usage+sql", {"relations", "usage", "sql"}, logs)):
            a = analyze(Options(root=root, out=work / "o", ignore_app_boundaries=True,
                                signals=frozenset(sig), query_logs=use_logs), passes=upto)
            rows[name].append(adjusted_rand_index(truth, a.partition))
            if name == "relations":
                g = a.graph.subgraph([n for n in a.graph if a.graph.degree(n)])
                rows["fk_only_louvain"].append(adjusted_rand_index(truth, louvain(g, 1.0, 0)))
    out: dict[str, Any] = {k: round(sum(v) / len(v), 3) for k, v in rows.items()}
    intended = mono / "intended_contexts.json"
    log = ROOT / "tests" / "analysis" / "logs" / "monolith_capture.jsonl"
    if intended.exists():
        truth = {m: c for m, c in json.loads(intended.read_text())["models"].items()
                 if c != "shared"}
        demo: dict[str, float] = {}
        for name, sig, use_logs in (("relations", {"relations"}, ()),
                                    ("relations+usage", {"relations", "usage"}, ()),
                                    ("relations+usage+sql", {"relations", "usage", "sql"},
                                     (log,))):
            a = analyze(Options(root=mono, out=work / "o", ignore_app_boundaries=True,
                                signals=frozenset(sig), query_logs=use_logs), passes=upto)
            demo[name] = round(adjusted_rand_index(truth, a.partition), 3)
            if name == "relations":
                g = a.graph.subgraph([n for n in a.graph if a.graph.degree(n)])
                demo["fk_only_louvain"] = round(adjusted_rand_index(truth, louvain(g, 1.0, 0)),
                                                3)
        out["demo_monolith"] = demo
    return out


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.analysis")
    parser.add_argument("--quick", action="store_true", help="small sizes, for CI")
    parser.add_argument("--corpus", action="store_true",
                        help="real Django projects (downloaded once into a cache)")
    parser.add_argument("--unseen", action="store_true",
                        help="with --corpus: the projects kept out of the corpus")
    parser.add_argument("--only", default="", help="comma-separated: e2e,imports,log,cluster,"
                                                   "ablation")
    args = parser.parse_args()
    if args.corpus:
        from bench.analysis.corpus import CORPUS, UNSEEN, print_table, run_corpus

        print_table(run_corpus(UNSEEN if args.unseen else CORPUS))
        return
    only = set(filter(None, args.only.split(",")))
    lines, models, statements, nodes, seeds = ((60_000, 120, 50_000, 2_000, 3) if args.quick
                                               else (1_000_000, 1_000, 1_000_000, 10_000, 8))
    work = Path(tempfile.mkdtemp(prefix="bench-analysis-"))
    results: dict[str, Any] = {}
    try:
        if not only or "e2e" in only:
            results["end_to_end"] = end_to_end(work, models, lines)
            print("end to end:", results["end_to_end"], flush=True)
        if not only or "imports" in only:
            tree = work / "tree"
            if not tree.exists():
                generate_project(tree, contexts=max(4, models // 6), models_per_context=(5, 7),
                                 target_lines=lines, seed=7)
            results["import_stage"] = import_stage(tree)
            print("import stage:", results["import_stage"], flush=True)
        if not only or "log" in only:
            results["log_mining"] = log_mining(work, statements)
            print("log mining:", results["log_mining"], flush=True)
        if not only or "cluster" in only:
            results["clustering"] = clustering(nodes)
            print("clustering:", results["clustering"], flush=True)
        if not only or "ablation" in only:
            results["ablation_ari"] = ablation(work, seeds)
            print("ablation (mean ARI):", results["ablation_ari"], flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
