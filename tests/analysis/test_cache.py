"""A second run over an unchanged tree reuses the cache and is at least 10x faster."""

from __future__ import annotations

import time
from pathlib import Path

from analysis.pipeline import analyze
from analysis.state import Options


def test_second_run_over_unchanged_tree_is_ten_times_faster(tmp_path: Path) -> None:
    from bench.analysis.generate import generate_log, generate_project

    # given a mid-sized generated project and log
    project = generate_project(tmp_path / "src", contexts=25, target_lines=40_000, seed=5)
    log = tmp_path / "q.jsonl"
    generate_log(log, project, 20_000)
    options = Options(root=tmp_path / "src", out=tmp_path / "out", query_logs=(log,))
    # when it is analysed twice
    started = time.perf_counter()
    first = analyze(options)
    cold = time.perf_counter() - started
    warm = float("inf")
    for _ in range(3):  # the best of three: a busy machine only ever slows a run down
        started = time.perf_counter()
        second = analyze(options)
        warm = min(warm, time.perf_counter() - started)
    # then the second run reuses everything, gives the same answer, and is >= 10x faster
    assert second.report["contexts"] == first.report["contexts"]
    assert second.report["project"]["cached_files"] == first.report["project"]["parsed_files"]
    assert cold / warm >= 10, (cold, warm)


def test_changed_file_is_reparsed_and_the_rest_come_from_the_cache(tmp_path: Path) -> None:
    from bench.analysis.generate import generate_project

    project = generate_project(tmp_path / "src", contexts=4, seed=6)
    options = Options(root=tmp_path / "src", out=tmp_path / "out")
    first = analyze(options)
    assert first.cached_files == 0
    views = next((tmp_path / "src" / "features" / "ctx0").glob("views*.py"))
    views.write_text(views.read_text() + "\n\ndef extra():\n    return 1\n")
    second = analyze(options)
    assert second.cached_files == project.files - 1 - len(second.skipped)
    assert second.report["metrics"]["models"] == first.report["metrics"]["models"]


def test_reused_result_rewrites_only_missing_or_changed_reports(tmp_path: Path) -> None:
    from bench.analysis.generate import generate_project

    generate_project(tmp_path / "src", contexts=3, seed=8)
    options = Options(root=tmp_path / "src", out=tmp_path / "out", formats=("json",))
    analyze(options)
    report = tmp_path / "out" / "report.json"
    written = report.stat().st_mtime_ns
    # an unchanged tree and intact reports: nothing is rewritten
    analyze(options)
    assert report.stat().st_mtime_ns == written
    # a format asked for that the last run did not write, or a deleted report: written
    analyze(Options(root=tmp_path / "src", out=tmp_path / "out", formats=("json", "md")))
    assert (tmp_path / "out" / "report.md").exists()
    report.unlink()
    analyze(options)
    assert report.exists()
