"""Pass 11: how much each signal says, per model and overall, and warnings when too little.

A metric such as "tables accessed by more than one context: none" is only true when the
signals behind it were there to see. On a tree whose code usage went unseen (dynamic
model access, imports the tool could not follow) it would be false comfort, so this pass
measures each signal's coverage (the share of models with at least one edge of that
signal) and says so, in the report and on stderr, when a signal is too weak to trust.
It also names files that could not be read, loudly when they are models or views modules.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from typing import TYPE_CHECKING

from analysis.state import Analysis

if TYPE_CHECKING:
    import networkx as nx

WEAK_SHARE = 0.3  # a signal touching fewer models than this share is too weak to trust
MIN_MODELS = 5  # below this, coverage says little
KEY_MODULES = ("models", "views", "viewsets", "api", "urls", "admin")


def check_signals(a: Analysis) -> Analysis:
    """Fill ``signal_health`` (per signal and per model) and ``warnings``."""
    g: nx.Graph = a.graph
    per_model: dict[str, dict[str, float]] = defaultdict(dict)
    for u, v, d in g.edges(data=True):
        for signal, w in d["signals"].items():
            for m in (u, v):
                per_model[m][signal] = round(per_model[m].get(signal, 0.0) + w, 3)
    n = g.number_of_nodes()
    # without a query log, SQL is only raw SQL found in code: rare by nature, not missing
    expected = set(a.options.signals) - (set() if a.options.query_logs else {"sql"})
    overall = {}
    warnings: list[str] = list(a.warnings)  # earlier passes' (an unmet --contexts)
    if a.sql.bad_lines:
        warnings.append(f"{a.sql.bad_lines} query log line(s) skipped: not JSON, no 'sql', "
                        f"or a field of the wrong type (first at "
                        f"{a.sql.unparsed.get('<unreadable log line>', '?')})")
    for signal in sorted(expected):
        covered = sum(1 for m in g.nodes if per_model[m].get(signal))
        overall[signal] = {"models": covered, "share": round(covered / n, 3) if n else 0.0}
        if n >= MIN_MODELS and covered < WEAK_SHARE * n:
            warnings.append(_weak(signal, covered, n))
    warnings += unreadable_warnings(a.skipped)
    health = {"signals": overall, "models": {m: per_model[m] for m in sorted(g.nodes)}}
    return replace(a, signal_health=health, warnings=tuple(warnings))


def _weak(signal: str, covered: int, n: int) -> str:
    why = {
        "usage": "code that names two models together was not found (dynamic model access, "
                 "or imports the tool could not follow)",
        "relations": "few keys between project models (most point outside the project)",
        "sql": "the query logs touch few of the models' tables",
    }.get(signal, "little evidence")
    return (f"signal '{signal}' is weak: only {covered} of {n} models have it; {why}. "
            f"Metrics built on it (shared tables, cross-context access) may read 'none' "
            f"only because it is missing.")


def unreadable_warnings(skipped: tuple[tuple[str, str], ...]) -> list[str]:
    """One line per file that could not be read; models and views modules first, loudly.

    >>> lines = unreadable_warnings((("a/b.py", "too big"), ("shop/models.py", "bad")))
    >>> [line[:40] for line in lines]
    ['UNREADABLE MODELS/VIEWS MODULE shop/mode', 'unreadable file a/b.py: too big']
    """
    loud, quiet = [], []
    for path, reason in skipped:
        stem = path.replace("\\", "/").rsplit("/", 1)[-1].removesuffix(".py")
        parent = path.replace("\\", "/").rsplit("/", 2)[-2] if path.count("/") else ""
        if stem in KEY_MODULES or parent in KEY_MODULES:
            loud.append(f"UNREADABLE MODELS/VIEWS MODULE {path}: {reason} (its models and "
                        f"endpoints are missing from the analysis)")
        else:
            quiet.append(f"unreadable file {path}: {reason}")
    return loud + quiet
