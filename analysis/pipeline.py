"""The analysis as one list of named passes, like sqlglot's optimizer ``RULES``.

Each pass is a pure-ish function ``Analysis -> Analysis`` in its own module; the only I/O
is reading the tree and logs (first passes) and writing reports (last pass). A run over
an unchanged tree with the same options and logs reuses the previous report data.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from analysis.build_graph import build_graph
from analysis.cache import FactsCache, code_version, write_atomic
from analysis.check_signals import check_signals
from analysis.collect_files import collect_files
from analysis.compute_metrics import compute_metrics
from analysis.detect_infrastructure import detect_infrastructure
from analysis.draft_contracts import draft_contracts
from analysis.extract_endpoints import extract_endpoints
from analysis.extract_models import extract_models
from analysis.extract_usage import extract_usage
from analysis.mine_sql import check_dialect, mine_sql
from analysis.parse_files import parse_files
from analysis.plan_extraction import plan_extraction
from analysis.propose_contexts import propose_contexts
from analysis.render_reports import output_names, render_reports
from analysis.resolve_imports import resolve_imports
from analysis.state import Analysis, Options

Pass = Callable[[Analysis], Analysis]

PASSES: tuple[Pass, ...] = (
    collect_files,
    parse_files,
    resolve_imports,
    extract_models,
    extract_usage,
    extract_endpoints,
    mine_sql,
    build_graph,
    detect_infrastructure,
    propose_contexts,
    compute_metrics,
    check_signals,
    plan_extraction,
    draft_contracts,
    render_reports,
)


def analyze(options: Options, passes: Sequence[Pass] = PASSES) -> Analysis:
    """Run the passes in order, timing each; reuse the last result if nothing changed."""
    check_dialect(options.dialect)
    for log in options.query_logs:
        _check_log(log)
    a = Analysis(options=options)
    complete = render_reports in passes  # a partial run (tests, bench) never reuses a report
    for p in passes:
        a = _timed(p, a)
        if complete and p is collect_files and (reused := _reuse(a)) is not None:
            done, outputs = reused
            # the reports on disk are the ones this result wrote: nothing to rewrite
            intact = outputs == _outputs(done) and set(outputs) == set(output_names(options))
            return done if intact else _timed(render_reports, done)
    if isinstance(a.cache, FactsCache):
        a.cache.save()
    if complete:
        _remember(a)
    return a


def _timed(p: Pass, a: Analysis) -> Analysis:
    started = time.perf_counter()
    a = p(a)
    return replace(a, timings={**a.timings, p.__name__: time.perf_counter() - started})


def _check_log(path: Any) -> None:
    from analysis.read_logs import read_query_log

    next(iter(read_query_log(path)), None)  # raises UnreadableLog with a clear line


def input_key(a: Analysis) -> str:
    """Digest of every input: file stats, log stats and the options that change results."""
    o = a.options
    h = hashlib.blake2b(digest_size=16)
    h.update(code_version().encode())
    for path in a.files:
        st = path.stat()
        h.update(f"{path}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    for log in o.query_logs:
        st = log.stat()
        h.update(f"log|{log.resolve()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    h.update(repr((o.dialect, o.contexts, o.resolution, o.seed, o.ignore_app_boundaries,
                   o.weights, sorted(o.signals), str(o.root.resolve()), o.include_tests,
                   o.decisions, o.emit_contracts)).encode())
    return h.hexdigest()


def _result_path(a: Analysis) -> Any:
    return (a.options.cache_dir or a.options.out / ".strangler-cache") / "last-result.json"


def _reuse(a: Analysis) -> tuple[Analysis, dict[str, list[int]]] | None:
    try:
        stored = json.loads(_result_path(a).read_text())
    except (OSError, ValueError):
        return None
    if stored.get("key") != input_key(a):
        return None
    report = stored["report"]
    report["project"]["cached_files"] = report["project"]["parsed_files"]
    done = replace(a, report=report, cached_files=report["project"]["parsed_files"])
    return done, stored.get("outputs", {})


def _outputs(a: Analysis) -> dict[str, list[int]]:
    """Size and modification time of each output file (absent ones left out)."""
    out: dict[str, list[int]] = {}
    for name in output_names(a.options):
        try:
            st = (a.options.out / name).stat()
        except OSError:
            continue
        out[name] = [st.st_size, st.st_mtime_ns]
    return out


def _remember(a: Analysis) -> None:
    try:
        write_atomic(_result_path(a), json.dumps({"key": input_key(a), "report": a.report,
                                                  "outputs": _outputs(a)}).encode())
    except OSError:
        return
