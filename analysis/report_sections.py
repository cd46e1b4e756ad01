"""Pieces of the report that Markdown and HTML render alike: the metric legend, the
alternative cuts, the context-by-context coupling matrix and list truncation that says so.

Plain data in, plain data out; each renderer only formats.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

# metric key -> (label, which way is better, what good looks like)
METRIC_LEGEND: dict[str, tuple[str, str, str]] = {
    "contexts": ("contexts (realised)", "-", "as many as the teams can own"),
    "context_sizes": ("context sizes (models)", "-", "no slivers of 1-2 models"),
    "modularity": ("modularity", "higher", "above 0.3: clear communities"),
    "sm": ("structural modularity (SM)", "higher", "close to 1"),
    "icp": ("inter-call percentage (ICP)", "lower", "below 0.2"),
    "ifn": ("interface number (IFN)", "lower", "1-2 interface models per context"),
    "ned": ("NED: share of models in extreme-size contexts", "lower", "below 0.2"),
    "mq": ("Bunch's MQ", "higher", "close to the number of contexts"),
    "cross_context_foreign_keys": ("cross-context foreign keys", "lower",
                                   "few, each a deliberate reference"),
    "tables_accessed_by_multiple_contexts": ("tables accessed by >1 context", "lower",
                                             "none, or read-only copies"),
    "tables_written_by_multiple_contexts": ("tables written by >1 context", "lower", "none"),
    "distributed_write_share": ("requests whose writes span contexts", "lower",
                                "below 5%"),
    "data_evidence": ("data metrics from", "-", "a query log as well as code"),
}
MATRIX_FROM = 6  # contexts; below this the coupling picture is enough


def more(items: list[Any], limit: int) -> tuple[list[Any], str]:
    """The first ``limit`` items and a note of how many were left out ("" if none).

    >>> more([1, 2, 3], 2)
    ([1, 2], '(and 1 more in report.json)')
    """
    if len(items) <= limit:
        return items, ""
    return items[:limit], f"(and {len(items) - limit} more in report.json)"


def cut_rows(r: dict[str, Any]) -> list[list[str]]:
    """One row per cut: which, contexts, modularity, MQ, slivers, sizes, chosen."""
    rows = []
    for c in r.get("cuts", []):
        which = (f"search depth {c['depth']}" if "depth" in c else
                 f"Leiden resolution {c['resolution']}" if "resolution" in c else "requested")
        rows.append([which, str(c.get("contexts", "")), str(c.get("modularity", "-")),
                     str(c.get("mq", "-")), str(c.get("slivers", "-")),
                     " ".join(map(str, c.get("sizes", [])[:12])),
                     "chosen" if c.get("chosen") else f"--contexts {c.get('contexts')}"])
    return rows


def coupling_matrix(r: dict[str, Any]) -> tuple[list[str], list[list[float]]]:
    """Contexts and the edge weight between each pair (the diagonal: weight inside)."""
    names = [c["name"] for c in r["contexts"]]
    index = {n: i for i, n in enumerate(names)}
    of = {n["id"]: n["context"] for n in r["nodes"]}
    cells: dict[tuple[int, int], float] = defaultdict(float)
    for e in r["edges"]:
        a, b = of.get(e["source"]), of.get(e["target"])
        if a in index and b in index:
            i, j = index[a], index[b]
            cells[(i, j)] += e["weight"]
            if i != j:
                cells[(j, i)] += e["weight"]
    return names, [[round(cells[(i, j)], 2) for j in range(len(names))]
                   for i in range(len(names))]
