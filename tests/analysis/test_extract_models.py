"""Golden test of model, relation and endpoint extraction on the sample project.

tests/analysis/sample_project uses every idiom the issue lists: a ``models/`` package
with re-exports, abstract bases and mixins across modules (a relation declared on an
abstract mixin and inherited), proxy and multi-table inheritance, ``Meta.app_label`` and
``db_table``, ``AppConfig.label``, string relations (``"app.Model"``, ``"Model"``,
``"self"``, ``settings.AUTH_USER_MODEL``), ``through=``, generic relations, custom
managers, and two files that do not parse.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from analysis.pipeline import PASSES, analyze
from analysis.state import Analysis, Options

GOLDEN = Path(__file__).parent / "golden" / "sample_project.json"


@pytest.fixture(scope="module")
def facts(sample_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Analysis:
    out = tmp_path_factory.mktemp("sample")
    return analyze(Options(root=sample_project, out=out), passes=PASSES[:7])


@pytest.fixture(scope="module")
def golden() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(GOLDEN.read_text())
    return data


def test_models_tables_and_labels_match_golden(facts: Analysis, golden: dict[str, Any]) -> None:
    got = {k: {"table": m.table, "app_label": m.app_label, "proxy": m.proxy,
               "abstract": m.abstract, "parents": list(m.parents),
               "managers": list(m.managers), "where": f"{m.path}:{m.line}"}
           for k, m in facts.models.items()}
    assert got == golden["models"]


def test_relations_match_golden(facts: Analysis, golden: dict[str, Any]) -> None:
    got = sorted([r.source, r.target, r.kind, r.field] + ([r.inherited_from] if r.inherited_from
                                                          else []) for r in facts.relations)
    assert got == golden["relations"]


def test_auto_many_to_many_tables_map_to_both_models(facts: Analysis,
                                                     golden: dict[str, Any]) -> None:
    assert {t: list(v) for t, v in facts.m2m_tables.items()} == golden["m2m_tables"]


def test_generic_and_external_relations_are_recorded(facts: Analysis,
                                                     golden: dict[str, Any]) -> None:
    assert sorted(facts.generic_models) == golden["generic_models"]
    assert facts.external_refs == golden["external_relations"]


def test_unparsable_files_are_skipped_and_listed(facts: Analysis, golden: dict[str, Any]) -> None:
    assert sorted(p for p, _ in facts.skipped) == golden["skipped"]
    assert all("SyntaxError" in why for _, why in facts.skipped)


def test_endpoints_follow_includes_and_routers(facts: Analysis, golden: dict[str, Any]) -> None:
    assert {e.template: e.view for e in facts.endpoints} == golden["endpoints"]
    assert {k: sorted(v) for k, v in facts.endpoint_models.items()} == golden["endpoint_models"]


def test_raw_sql_in_code_is_mined(facts: Analysis, golden: dict[str, Any]) -> None:
    # cursor.execute(CONSTANT), .raw(), RawSQL(), .extra(tables=..., where=...), RunSQL
    tables = sorted({t for acc in facts.sql.shapes.values() for t in acc.reads | acc.writes})
    assert tables == golden["code_sql_tables"]
    written = {t for acc in facts.sql.shapes.values() for t in acc.writes}
    assert written == {"sales_order"}  # the RunSQL migration


def test_nullable_and_non_cascade_keys_are_references(facts: Analysis) -> None:
    # PROTECT, and SET_NULL with null=True, point at another aggregate; CASCADE is part-of
    refs = sorted((r.source, r.field) for r in facts.relations if r.reference)
    assert refs == [("catalog.Category", "parent"), ("catalog.Product", "category"),
                    ("sales.OrderLine", "product")]


def test_a_model_whose_only_key_is_part_of_another_is_its_dependent(facts: Analysis) -> None:
    from analysis.build_graph import dependents

    # AuditLog has one CASCADE key (to the user); OrderLine cascades from its order but
    # also points at a product, so it is part of neither alone
    assert dependents(facts) == {"core.AuditLog": "people.Member",
                                 "core.TaggedItem": "core.Tag"}
