"""Patterns of real Django code, on a small vendored project (tests/analysis/real_code_project).

Each pattern comes from open-source projects on which the analysis fell short (issue 10):
models in module-level ``if``/``try`` blocks, star imports and ``__all__``, app labels
from ``AppConfig.label``, a ``models/models.py`` module, app folders without
``__init__.py``, a paginator ``Page`` that is no model, the swappable user model, proxy and
abstract models, test and example models, and a file in Python syntax newer than ours.
The expected models and relations are in ``golden/real_code_project.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from analysis.pipeline import PASSES, analyze
from analysis.state import Analysis, Options

ROOT = Path(__file__).parent / "real_code_project"
GOLDEN = Path(__file__).parent / "golden" / "real_code_project.json"
UP_TO = PASSES[: [p.__name__ for p in PASSES].index("check_signals") + 1]


def _run(tmp: Path, **kw: object) -> Analysis:
    return analyze(Options(root=ROOT, out=tmp, **kw), passes=UP_TO)  # type: ignore[arg-type]


def test_models_and_relations_match_the_golden_file(tmp_path: Path) -> None:
    # given the vendored project; when it is analysed
    a = _run(tmp_path)
    # then models, tables and relations are what Django would see
    gold = json.loads(GOLDEN.read_text())
    found = {k: {"table": m.table, "proxy": m.proxy, "abstract": m.abstract,
                 "where": f"{m.path}:{m.line}"} for k, m in sorted(a.models.items())}
    assert found == gold["models"]
    assert sorted([r.source, r.target, r.kind] for r in a.relations) == gold["relations"]
    assert a.auth_user == gold["auth_user"]


def test_models_in_module_level_if_and_try_blocks_are_seen(tmp_path: Path) -> None:
    a = _run(tmp_path)
    assert {"weblog.Post", "weblog.Tag"} <= set(a.models)


def test_app_labels_come_from_appconfig_and_models_models_is_not_an_app(tmp_path: Path) -> None:
    a = _run(tmp_path)
    assert a.models["weblog.Post"].table == "weblog_post"  # AppConfig.label, not "blog"
    assert {m.app_label for m in a.models.values()} == {"weblog", "forum", "kernel", "polls",
                                                        "newer"}
    assert not any(m.table.startswith("models_") for m in a.models.values())


def test_a_paginator_page_is_not_a_model(tmp_path: Path) -> None:
    a = _run(tmp_path)
    assert not any(m.name == "PostPage" for m in a.models.values())


def test_star_imports_and_all_carry_the_usage_signal(tmp_path: Path) -> None:
    a = _run(tmp_path)
    used = {u.unit: set(u.models) for u in a.usages}
    assert used["blog.views.publish"] == {"weblog.Post", "weblog.Comment"}
    assert used["forum.views.thread_view"] == {"forum.Thread", "forum.Reply"}
    assert a.resolve.resolve("forum.views", "Hidden") is None  # not in __all__


def test_swappable_user_model_is_resolved(tmp_path: Path) -> None:
    a = _run(tmp_path)
    assert ("weblog.Post", "kernel.Member", "fk") in {
        (r.source, r.target, r.kind) for r in a.relations}


def test_test_and_example_models_are_left_out_unless_asked(tmp_path: Path) -> None:
    names = {m.name for m in _run(tmp_path / "a").models.values()}
    assert not names & {"FixtureModel", "ExampleModel"}
    names = {m.name for m in _run(tmp_path / "b", include_tests=True).models.values()}
    assert {"FixtureModel", "ExampleModel"} <= names


def test_newer_syntax_is_read_with_the_fallback_parser(tmp_path: Path) -> None:
    a = _run(tmp_path)
    newer = next(f for f in a.facts if f.path == "newer/models.py")
    assert newer.parser == "libcst"
    assert "newer.Box" in a.models
    assert not a.skipped


def test_an_unreadable_models_module_is_named_loudly(tmp_path: Path) -> None:
    # given a models module that no Python version reads
    root = tmp_path / "proj"
    (root / "shop").mkdir(parents=True)
    (root / "manage.py").write_text("")
    (root / "shop" / "models.py").write_text("class Broken(:\n")
    (root / "shop" / "helpers.py").write_text("def f(:\n    return Product.objects\n")
    # when
    a = analyze(Options(root=root, out=tmp_path / "out"), passes=UP_TO)
    # then
    assert a.warnings[0].startswith("UNREADABLE MODELS/VIEWS MODULE shop/models.py")
    assert any(w.startswith("unreadable file shop/helpers.py") for w in a.warnings)


def test_every_model_is_placed_and_isolated_ones_are_marked(tmp_path: Path) -> None:
    a = _run(tmp_path, ignore_app_boundaries=True)
    concrete = {k for k, m in a.models.items() if not m.abstract}
    assert set(a.partition) == concrete
    lone = [c for c in a.contexts if c["isolated"]]
    assert [c["models"] for c in lone] == [["forum.Hidden"], ["polls.Poll"]]


def test_signal_health_is_reported_per_signal_and_per_model(tmp_path: Path) -> None:
    a = _run(tmp_path, ignore_app_boundaries=True)
    assert set(a.signal_health["signals"]) == {"relations", "usage"}
    assert a.signal_health["models"]["forum.Reply"]["usage"] > 0
    # usage reaches 4 of 10 models here: weak but above the bar, so no warning for it
    assert not any("'usage' is weak" in w for w in a.warnings)


def test_a_weak_usage_signal_is_a_warning(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    (root / "app").mkdir(parents=True)
    (root / "app" / "models.py").write_text(
        "from django.db import models\n" + "".join(
            f"class M{i}(models.Model):\n    x = models.ForeignKey('app.M{i + 1}', "
            f"on_delete=models.CASCADE)\n" for i in range(6)) + "class M6(models.Model):\n"
        "    y = models.IntegerField()\n")
    a = analyze(Options(root=root, out=tmp_path / "out"), passes=UP_TO)
    assert any(w.startswith("signal 'usage' is weak: only 0 of 7 models") for w in a.warnings)


def test_query_log_lines_with_wrong_types_are_skipped_and_counted(tmp_path: Path) -> None:
    log = tmp_path / "q.jsonl"
    log.write_text("\n".join(json.dumps(r) for r in (
        {"sql": "SELECT * FROM weblog_post", "route_pattern": "posts/", "request_id": "1"},
        {"sql": 42, "route_pattern": "posts/"},
        {"sql": "SELECT 1", "route_pattern": ["posts/"]},
        {"sql": "SELECT 1", "request_id": {"id": 1}},
    )) + "\n")
    a = _run(tmp_path / "o", query_logs=(log,))
    assert a.sql.bad_lines == 3
    assert any("3 query log line(s) skipped" in w for w in a.warnings)


def test_contexts_that_cannot_be_met_say_so(tmp_path: Path) -> None:
    a = _run(tmp_path, contexts=50)
    assert any(w.startswith("--contexts 50 cannot be met") for w in a.warnings)


@pytest.mark.parametrize("kind", ["file", "unwritable"])
def test_out_that_cannot_take_the_reports_fails_before_the_analysis(
        tmp_path: Path, kind: str) -> None:
    from analysis.cli import analyze as command

    # a folder under a file cannot be made, even by root (who may write anywhere else)
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    out = blocker if kind == "file" else blocker / "reports"
    result = CliRunner().invoke(command, [str(ROOT), "--out", str(out), "--json"])
    assert result.exit_code != 0
    assert f"--out {out}" in str(result.exception)
    assert ("is a file" if kind == "file" else "cannot write there") in str(result.exception)


def test_a_catch_all_view_serving_several_contexts_is_a_routes_warning(tmp_path: Path) -> None:
    # given a catch-all view (config/urls.py) that reads posts and threads
    a = analyze(Options(root=ROOT, out=tmp_path, ignore_app_boundaries=True))
    # then the warning names it, in the report and as a comment in the routes draft
    assert any(w.startswith("routes draft: endpoint /{path} (blog.views.everything) serves 2")
               for w in a.warnings)
    assert "# WARNING: routes draft: endpoint /{path}" in (tmp_path / "strangler.toml"
                                                          ).read_text()
    assert not any("/posts/{pk}/publish/" in w for w in a.warnings)  # one context: fine


def test_report_has_contents_legend_and_alternative_cuts(tmp_path: Path) -> None:
    analyze(Options(root=ROOT, out=tmp_path, ignore_app_boundaries=True))
    md = (tmp_path / "report.md").read_text()
    assert md.count("Contents: ") == 1
    assert "[Metrics](#metrics)" in md
    assert "| modularity | " in md
    assert "| higher | above 0.3" in md
    assert "## Alternative cuts" in md
    assert "| search depth 0 |" in md
    assert "## Signal health" in md
    html = (tmp_path / "report.html").read_text()
    assert '<h2 id="alternative-cuts">Alternative cuts</h2>' in html
    assert '<a href="#metrics">Metrics</a>' in html


def test_use_cases_from_the_query_log_are_listed_per_context(tmp_path: Path) -> None:
    log = tmp_path / "q.jsonl"
    log.write_text(json.dumps({"sql": "SELECT * FROM forum_thread", "request_id": "1",
                               "route_pattern": "threads/<int:pk>/"}) + "\n")
    a = _run(tmp_path / "o", query_logs=(log,), ignore_app_boundaries=True)
    ctx = next(c for c in a.contexts if "forum.Thread" in c["models"])
    assert ctx["use_cases"] == ["/threads/{pk}/"]


def test_many_contexts_get_a_coupling_heat_map() -> None:
    from analysis.report_html import _heat_map
    from analysis.report_markdown import _matrix

    # given seven contexts in a ring, each tied to the next
    names = [f"c{i}" for i in range(7)]
    r = {"contexts": [{"name": n} for n in names],
         "nodes": [{"id": f"{n}.M", "context": n} for n in names],
         "edges": [{"source": f"c{i}.M", "target": f"c{(i + 1) % 7}.M", "weight": 1.0 + i}
                   for i in range(7)]}
    # then both renderings show the matrix, the strongest pair darkest in HTML
    md = "\n".join(_matrix(r))
    assert "## Coupling matrix" in md
    assert "| **c0** | . | 1 |" in md
    html = _heat_map(r)
    assert html.count("<tr>") == 8
    assert "rgba(225,87,89,1.00)" in html
    assert _heat_map({**r, "contexts": r["contexts"][:3]}) == ""


def test_pins_merges_and_names_steer_the_proposal(tmp_path: Path) -> None:
    from analysis.decisions import read_decisions

    # given a contexts file and a pin on the command line
    decisions_file = tmp_path / "decisions.toml"
    decisions_file.write_text('[pins]\n"polls.Poll" = "community"\n'
                              '[merge]\nkernel = ["member", "hidden"]\n'
                              '[names]\nweblog = "publishing"\n')
    decisions = read_decisions(decisions_file, ("forum.Thread=community",))
    # when the analysis runs around them
    a = _run(tmp_path / "o", ignore_app_boundaries=True, decisions=decisions)
    by_name = {c["name"]: set(c["models"]) for c in a.contexts}
    # then pinned models share their named context, merged ones one context, names change
    assert {"polls.Poll", "forum.Thread"} <= by_name["community"]
    assert {"kernel.Member", "forum.Hidden"} <= by_name["kernel"]
    assert "weblog.Post" in by_name["publishing"]
    assert "weblog" not in by_name


def test_bad_decisions_fail_with_the_offending_value(tmp_path: Path) -> None:
    from analysis.decisions import read_decisions
    from analysis.errors import BadOption

    with pytest.raises(BadOption, match="expected MODEL=CONTEXT"):
        read_decisions(Path(""), ("Poll",))
    bad = tmp_path / "d.toml"
    bad.write_text("[pin]\n")
    with pytest.raises(BadOption, match=r"unknown section \[pin\]"):
        read_decisions(bad)
    with pytest.raises(BadOption, match="did you mean polls.Poll"):
        _run(tmp_path / "o", decisions=read_decisions(Path(""), ("polls.Pol=x",)))


def _two_app_project(root: Path) -> Path:
    for app, model, field in (("shop", "Product", "CharField(max_length=9)"),
                              ("billing", "Invoice", "IntegerField()")):
        (root / app).mkdir(parents=True)
        (root / app / "__init__.py").write_text("")
        (root / app / "models.py").write_text(
            f"from django.db import models\n\n\nclass {model}(models.Model):\n"
            f"    x = models.{field}\n")
        (root / app / "views.py").write_text(
            f"from {app}.models import {model}\n\n\ndef index():\n"
            f"    return {model}.objects.all()\n")
    (root / "manage.py").write_text("")
    # today's breach of the boundary: billing's views import shop's models module
    (root / "billing" / "views.py").write_text(
        "import shop.models  # noqa: F401\n" + (root / "billing" / "views.py").read_text())
    return root


def test_emitted_contracts_pass_today_and_fail_on_a_new_breach(tmp_path: Path) -> None:
    import subprocess
    import sys

    # given a project of two contexts with one cross import today
    root = _two_app_project(tmp_path / "proj")
    out = tmp_path / "out"
    a = analyze(Options(root=root, out=out, ignore_app_boundaries=True, emit_contracts=True))
    ini = (out / "contracts.ini").read_text()
    assert a.contracts["baseline"] == {"billing": [["billing.views", "shop.models"]]}
    assert a.contracts["contexts"] == {"billing": ["billing"], "shop": ["shop"]}
    assert "    billing.views -> shop.models" in ini
    lint = [str(Path(sys.executable).parent / "lint-imports"), str(out / "contracts.ini")]
    env = {"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"}
    # when import-linter checks the project as it is, then the baseline keeps it green
    done = subprocess.run(lint, cwd=root, env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    # when a new cross import appears, then it fails
    (root / "billing" / "admin.py").write_text("from shop.views import index  # noqa: F401\n")
    done = subprocess.run(lint, cwd=root, env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 1
    assert "billing.admin -> shop.views" in done.stdout


def test_a_module_with_models_of_several_contexts_is_to_split_first(tmp_path: Path) -> None:
    from analysis.decisions import read_decisions

    # given blog/models.py whose Comment a person pins away from Post
    decisions = read_decisions(Path(""), ("weblog.Comment=discussion",))
    a = analyze(Options(root=ROOT, out=tmp_path, ignore_app_boundaries=True,
                        decisions=decisions, emit_contracts=True))
    # then the module is to split first, in no contract, and named in both outputs
    assert "blog.models" in a.contracts["split_first"]
    assert not any("blog.models" in ms for ms in a.contracts["contexts"].values())
    assert "# split first (holds models of several contexts): blog.models" in (
        tmp_path / "contracts.ini").read_text()
    assert "- `blog.models`" in (tmp_path / "report.md").read_text()


def test_the_corpus_truth_counter_agrees_on_the_fixture_project(tmp_path: Path) -> None:
    """bench/analysis/count_models.py shares no code with analysis/; on the fixture both
    must see the same concrete models in the same apps (the corpus's truth is trusted)."""
    from bench.analysis.count_models import count_models

    truth = {(m.path, m.name): m.app for m in count_models(ROOT)}
    a = _run(tmp_path)
    found = {(m.path, m.name): m.app_label for m in a.models.values() if not m.abstract}
    assert truth == found


def test_contexts_n_counts_the_isolated_models(tmp_path: Path) -> None:
    # given two isolated models (forum.Hidden, polls.Poll) and two connected groups
    a = _run(tmp_path, contexts=4, ignore_app_boundaries=True)
    # then asking for four contexts gives four: two isolated, two cut from the rest
    assert len(a.contexts) == 4
    assert not any("cannot be met" in w for w in a.warnings)
