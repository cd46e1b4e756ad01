"""The options of a run and the state that flows through the passes.

Every pass takes an :class:`Analysis` and returns a new one (``dataclasses.replace``); no
pass reaches back into an earlier one's internals, so each can be tested alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analysis.decisions import Decisions
from analysis.facts import (
    Endpoint,
    FileFacts,
    ModelInfo,
    Relation,
    SqlSummary,
    Statement,
    Usage,
)

Progress = Callable[[str, int, int], None]  # (stage, done, total)


def _no_progress(stage: str, done: int, total: int) -> None:
    return None


@dataclass(frozen=True)
class Weights:
    """Edge weights per signal; documented in docs/analysis.md (``Weights`` in the API).

    Relation weights count once per declared field; usage and SQL weights are spread over
    the pairs of one unit (``w / (k - 1)`` for a unit touching ``k`` models) so a function
    that touches everything does not glue everything together.
    """

    fk: float = 1.0
    o2o: float = 1.5
    m2m: float = 1.0
    through: float = 1.0
    generic: float = 0.3
    mti: float = 3.0
    proxy: float = 3.0
    reference: float = 0.5  # factor on a nullable or non-CASCADE key (between aggregates)
    usage: float = 1.0
    module: float = 0.3
    sql_coaccess: float = 0.6
    shared_write: float = 1.2
    same_app: float = 0.4
    same_file: float = 0.2
    max_unit_models: int = 12  # a unit touching more models than this counts as one that size
    hub_factor: float = 2.5  # neighbours above hub_factor x the median make a hub, damped
    hub_power: float = 1.0  # a key into a hub counts 1 / (in-degree / hub_factor) ** power


@dataclass(frozen=True)
class Options:
    """What the user asked for (the CLI flags), plus tuning a caller may override."""

    root: Path
    query_logs: tuple[Path, ...] = ()
    dialect: str | None = None
    out: Path = Path("strangler-report")
    formats: tuple[str, ...] = ("html", "md", "json")
    contexts: int | None = None
    resolution: float | None = None
    seed: int = 0
    ignore_app_boundaries: bool = False
    include_tests: bool = False  # test, example and fixture models join the analysis
    decisions: Decisions = Decisions()  # --pin, --contexts-file (analysis/decisions.py)
    emit_contracts: bool = False  # also write contracts.ini (import-linter)
    weights: Weights = Weights()
    signals: frozenset[str] = frozenset({"relations", "usage", "sql"})
    cache_dir: Path | None = None  # default: <out>/.strangler-cache
    progress: Progress = field(default=_no_progress, compare=False)


@dataclass(frozen=True)
class Analysis:
    """Everything known so far; each pass fills in its part."""

    options: Options
    files: tuple[Path, ...] = ()
    facts: tuple[FileFacts, ...] = ()
    skipped: tuple[tuple[str, str], ...] = ()  # (path, reason)
    cached_files: int = 0
    cache: Any = None  # analysis.cache.FactsCache, saved once by the pipeline
    modules: dict[str, FileFacts] = field(default_factory=dict)
    import_edges: dict[str, set[str]] = field(default_factory=dict)
    models: dict[str, ModelInfo] = field(default_factory=dict)
    relations: tuple[Relation, ...] = ()
    generic_models: frozenset[str] = frozenset()
    m2m_tables: dict[str, tuple[str, str]] = field(default_factory=dict)
    external_refs: dict[str, int] = field(default_factory=dict)
    auth_user: str = "auth.User"  # the user model's key (settings, or the one user model)
    usages: tuple[Usage, ...] = ()
    direct_use: dict[str, set[str]] = field(default_factory=dict)  # unit -> models it names
    resolve: Any = None  # analysis.resolve.Resolver, kept for later passes
    endpoints: tuple[Endpoint, ...] = ()
    endpoint_models: dict[str, set[str]] = field(default_factory=dict)
    statements: tuple[Statement, ...] = ()
    sql: SqlSummary = field(default_factory=SqlSummary)
    table_models: dict[str, tuple[str, ...]] = field(default_factory=dict)
    graph: Any = None  # networkx.Graph of models
    hubs: dict[str, float] = field(default_factory=dict)
    infrastructure: dict[str, list[str]] = field(default_factory=dict)  # model -> reasons
    partition: dict[str, int] = field(default_factory=dict)
    cuts: tuple[dict[str, Any], ...] = ()
    contexts: tuple[dict[str, Any], ...] = ()
    metrics: dict[str, Any] = field(default_factory=dict)
    conflicts: tuple[dict[str, Any], ...] = ()
    plan: tuple[dict[str, Any], ...] = ()
    signal_health: dict[str, Any] = field(default_factory=dict)
    contracts: dict[str, Any] = field(default_factory=dict)  # analysis/draft_contracts.py
    warnings: tuple[str, ...] = ()  # said in the report and on stderr
    report: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
