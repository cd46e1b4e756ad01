"""The routes file schema: the issue's minimal file, errors that point at key and line."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from strangler_proxy.config import SCHEMA, key_lines, load_config, parse_config
from strangler_proxy.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]

MINIMAL = '''# comments like this one survive `strangler routes set`
[proxy]
listen = "127.0.0.1:8080"

[admin]
listen = "127.0.0.1:8081"
token = "change-me"            # or token_env = "STRANGLER_ADMIN_TOKEN"

[upstreams.monolith]
url = "http://127.0.0.1:8000"

[upstreams.catalog]
url = "http://127.0.0.1:8001"

[[routes]]
name = "catalog"
match = { path_prefix = "/api/products/", methods = ["GET", "HEAD"] }
mode = "canary"
percent = 10
target = "catalog"
sticky = "header:X-User-Id"
'''


def test_the_issue_minimal_file_loads_as_is() -> None:
    config = parse_config(MINIMAL)
    route = config.routes[0]
    assert (route.name, route.mode, route.percent, route.target, route.sticky) == \
        ("catalog", "canary", 10, "catalog", "header:X-User-Id")
    assert route.match.methods == {"GET", "HEAD"}
    assert route.line == 15
    assert config.admin.token == "change-me"
    assert config.upstreams["catalog"].port == 8001
    # the docs' example token loads, with a warning to replace it
    assert [w.split(" is ")[0] for w in config.warnings] == ["admin.token = 'change-me'"]


def _error(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="s.toml")
    return str(info.value)


@pytest.mark.parametrize(("change", "expected"), [
    (("percent = 10", "percent = 150"),
     "routes[0].percent: 150 is not between 0 and 100 (in s.toml, line 19)"),
    (("mode = \"canary\"", "mode = \"blue\""),
     "routes[0].mode: 'blue' is not one of monolith, shadow, canary, service "
     "(in s.toml, line 18)"),
    (("target = \"catalog\"", "target = \"nope\""), "routes[0].target: 'nope' is not an upstream"),
    (("sticky = \"header:X-User-Id\"", "stiky = 1"), "routes[0].stiky: unknown key"),
    (("listen = \"127.0.0.1:8080\"", "listen = \"8080\""),
     "proxy.listen: '8080' is not HOST:PORT"),
    (("token = \"change-me\"", "token_name = \"x\""), "admin: needs token"),
    (("url = \"http://127.0.0.1:8001\"", "url = \"ftp://x\""), "upstreams.catalog.url: 'ftp://x'"),
    (("[upstreams.monolith]", "[upstreams.mono]"), "upstreams: needs [upstreams.monolith]"),
    (("path_prefix = \"/api/products/\"", "path = \"/a\", path_prefix = \"/b\""),
     "routes[0].match: needs exactly one of path_prefix, path or path_template"),
    (("methods = [\"GET\", \"HEAD\"]", "methods = [\"GET\", \"FETCH\"]"),
     "routes[0].match.methods[1]: 'FETCH' is not an HTTP method"),
])
def test_errors_name_key_value_and_line(change: tuple[str, str], expected: str) -> None:
    message = _error(MINIMAL.replace(*change))
    assert message.startswith(expected), message
    assert "line" in message


def test_unknown_top_level_table_is_an_error() -> None:
    message = _error(MINIMAL + "\n[proxxy]\nlisten = \"x\"\n")
    assert message.startswith("proxxy: unknown key")
    assert "line 23" in message


def test_invalid_toml_is_one_line() -> None:
    message = _error("[proxy\n")
    assert message.startswith("not valid TOML")
    assert "\n" not in message


def test_duplicate_key_is_a_config_error_naming_key_and_line() -> None:
    text = MINIMAL.replace('url = "http://127.0.0.1:8001"',
                           'url = "http://127.0.0.1:8001"\nurl = "http://127.0.0.1:8002"')
    line = text.splitlines().index('url = "http://127.0.0.1:8002"') + 1
    message = _error(text)
    assert 'duplicate key "url" (first set on line' in message
    assert message.endswith(f", line {line})")
    assert "\n" not in message


def test_duplicate_route_names_are_refused() -> None:
    second = MINIMAL[MINIMAL.index("[[routes]]"):]
    assert "is used by an earlier route" in _error(MINIMAL + "\n" + second)


def test_shadowed_route_is_a_warning_not_an_error() -> None:
    text = MINIMAL + '''
[[routes]]
name = "one-product"
match = { path_template = "/api/products/{id}/", methods = ["GET"] }
'''
    config = parse_config(text)
    config = replace(config, warnings=tuple(w for w in config.warnings
                                            if not w.startswith("admin.token")))
    assert len(config.warnings) == 1
    assert "'one-product'" in config.warnings[0]
    assert "'catalog'" in config.warnings[0]


def test_shadow_and_compare_tables_parse_into_frozen_values() -> None:
    text = MINIMAL + '''shadow = { percent = 50, writes = true, rewrite = { host = "svc" } }
compare = { ignore = ["served_at"], tolerance = { "price" = 0.01 }, formats = { "id" = "uuid" } }
'''
    route = parse_config(text).routes[0]
    assert route.shadow.percent == 50
    assert route.shadow.writes
    assert route.shadow.rewrite.host == "svc"
    assert route.compare.ignore == ("served_at",)
    assert route.compare.tolerance["price"] == 0.01
    assert route.compare.formats["id"] == "uuid"
    with pytest.raises(TypeError):
        route.compare.tolerance["x"] = 1  # type: ignore[index]


def test_compare_shape_errors_name_the_key() -> None:
    bad = MINIMAL + 'compare = { formats = { "id" = "roman" } }\n'
    assert _error(bad).startswith("routes[0].compare.formats.id: 'roman' is not")
    bad = MINIMAL + 'shadow = { percent = "all" }\n'
    assert _error(bad).startswith("routes[0].shadow.percent: 'all' must be a number")


def test_key_lines_handles_multiline_arrays_and_dotted_keys() -> None:
    lines = key_lines('[shadow]\nredact_fields = [\n  "a",\n  "b",\n]\nstore = "x"\n'
                      '[[routes]]\nname = "a"\nmatch.path = "/x"\n')
    assert lines[("shadow", "store")] == 6
    assert lines[("routes", 0, "match", "path")] == 9


def test_load_config_names_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such routes file"):
        load_config(tmp_path / "nope.toml")


def test_docs_config_md_lists_every_key_the_code_accepts() -> None:
    docs = (ROOT / "docs" / "config.md").read_text()
    documented = set(re.findall(r"`([a-z_\[\].A-Z]+)`", docs))
    missing = []
    for table, keys in SCHEMA.items():
        for key in keys:
            full = f"{table}.{key}" if table else key
            if full not in documented:
                missing.append(full)
    assert missing == [], f"docs/config.md does not document: {missing}"
