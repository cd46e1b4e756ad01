"""Compare-rule patterns: parsing, errors, matching and path rendering."""

from __future__ import annotations

import pytest

from strangler_proxy.config import parse_config
from strangler_proxy.shadow.rules import (
    ANY_INDEX,
    DESCEND,
    RuleError,
    active,
    advance,
    compile_rules,
    generalize,
    parse_pattern,
)


@pytest.mark.parametrize(("pattern", "tokens"), [
    ("served_at", ("served_at",)),
    ("$.served_at", ("served_at",)),
    ("items[*].updated_at", ("items", ANY_INDEX, "updated_at")),
    ("a[2]", ("a", 2)),
    ("$..id", (DESCEND, "id")),
    ("$['odd key'].x", ("odd key", "x")),
])
def test_patterns_parse(pattern: str, tokens: tuple[object, ...]) -> None:
    assert parse_pattern(pattern) == tokens


@pytest.mark.parametrize("pattern", ["", "$", "a[", "a..", "a]b"])
def test_bad_patterns_are_refused_with_the_pattern_in_the_message(pattern: str) -> None:
    with pytest.raises(RuleError, match="^'"):
        parse_pattern(pattern)


def test_bad_format_is_refused() -> None:
    with pytest.raises(RuleError, match="iso8601"):
        compile_rules({"formats": {"x": "date"}})


def test_nfa_reaches_the_rule_only_at_the_end_of_its_pattern() -> None:
    rules = compile_rules({"ignore": ["items[*].at"]})
    states = rules.start
    for seg in ("items", 3):
        states = advance(rules.rules, states, seg)
        assert active(rules.rules, states) == ()
    assert [r.pattern for r in active(rules.rules, advance(rules.rules, states, "at"))] == [
        "items[*].at"]
    assert advance(rules.rules, states, "other") == ()


def test_rules_compile_from_the_routes_file() -> None:
    config = parse_config('''
[admin]
token = "t"
[upstreams.monolith]
url = "http://127.0.0.1:1"
[upstreams.catalog]
url = "http://127.0.0.1:2"
[[routes]]
name = "products"
match = { path_prefix = "/api/products/" }
mode = "shadow"
target = "catalog"
[routes.compare]
ignore = ["served_at", "items[*].updated_at"]
headers = ["Content-Type"]
tolerance = { price = 0.01 }
unordered = { tags = "" }
formats = { id = "uuid" }
''')
    rules = compile_rules(config.routes[0].compare)
    assert [(r.pattern, r.action) for r in rules.rules] == [
        ("served_at", "ignore"), ("items[*].updated_at", "ignore"), ("price", "tolerance"),
        ("tags", "unordered"), ("id", "format")]
    assert rules.headers == ("content-type",)


def test_generalize_replaces_indices_and_keys() -> None:
    assert generalize("$.a[0].b[id=\"x\"].c") == "$.a[*].b[*].c"


@pytest.mark.parametrize("module", [
    "compare", "rules", "noise", "store", "gate", "report", "sink",
    "worker", "dashboard", "replay"])
def test_doctests_of_the_shadow_modules_pass(module: str) -> None:
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(f"strangler_proxy.shadow.{module}"))
    assert result.failed == 0
    assert result.attempted > 0
