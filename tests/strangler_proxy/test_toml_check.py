"""Our own TOML mistakes finder: the line and the words do not depend on a parser library."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from strangler_proxy.config import parse_config
from strangler_proxy.errors import ConfigError
from strangler_proxy.toml_check import check_toml

VALID = '''# a routes file
[proxy]
listen = "127.0.0.1:8080"   # comment after a value

[upstreams.monolith]
url = "http://127.0.0.1:8000"
weights = [1, 2,
  3,  # comments inside arrays
]

[[routes]]
name = "a"
match = { path_prefix = "/a/", methods = ["GET"] }
shadow.percent = 50
shadow.writes = false

[routes.compare]
ignore = ["$.x"]

[[routes]]
name = 'b'
text = """multi
line "with quotes" """
when = 1979-05-27T07:32:00Z
local = 1979-05-27 07:32:00
numbers = [0x1f, 1_000, -3.5e2, inf, nan, true]

[routes.compare]
ignore = []
'''


def test_valid_file_has_no_problem() -> None:
    tomllib.loads(VALID)  # given a file the stdlib parser accepts
    assert check_toml(VALID) is None


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ('[x]\nurl = "a"\nurl = "b"\n', 3, 'duplicate key "url" (first set on line 2)'),
        ("[x]\na = 1\n[x]\n", 3, "duplicate table [x] (first on line 1)"),
        ("a.b = 1\n[a]\n", 2, "clashes with the key a"),
        ('[[routes]]\nname = "a"\nname = "b"\n', 3, 'duplicate key "name"'),
        ('x = { a = 1, a = 2 }\n', 1, 'duplicate key "a"'),
        ('a = 1\n\nname = "catalog\nb = 2\n', 3, "string is never closed"),
        ("a = 'oops\n", 1, "string is never closed; add the closing '"),
        ('a = """never\nclosed\n', 1, 'multi-line string is never closed; add the closing """'),
        ("a = [1, 2\nb = 3\n", 2, "expected , or ] in the array"),
        ("a = [1, 2,\n", 1, "array is never closed"),
        ("a = { b = 1\n", 1, "inline table is never closed"),
        ("[proxy\n", 1, "table header is not closed"),
        ("listen 8080\n", 1, "expected = after the key 'listen'"),
        ("percent = abc\n", 1, "'abc' is not a TOML value; quote text (\"abc\")"),
        ("percent = 1 2\n", 1, "unexpected '2' after the value"),
        ("= 1\n", 1, "expected a key"),
    ],
)
def test_each_mistake_is_named_with_its_line(text: str, line: int, words: str) -> None:
    with pytest.raises(tomllib.TOMLDecodeError):
        tomllib.loads(text)  # the stdlib parser agrees that it is broken
    problem = check_toml(text)
    assert problem is not None
    assert problem.line == line
    assert words in problem.message


def test_no_false_alarm_on_the_stdlib_valid_corpus_or_our_own_files() -> None:
    # given every TOML file the stdlib's own tests call valid (when the interpreter ships
    # them) and every TOML file in this repository
    import test  # type: ignore[import-not-found,unused-ignore]

    corpus = Path(test.__file__).parent / "test_tomllib" / "data" / "valid"
    files = sorted(corpus.rglob("*.toml")) if corpus.is_dir() else []
    root = Path(__file__).resolve().parents[2]
    files += [p for p in root.rglob("*.toml") if ".venv" not in p.parts]
    checked = 0
    for path in files:
        text = path.read_text(encoding="utf-8")
        try:
            tomllib.loads(text)
        except (tomllib.TOMLDecodeError, UnicodeDecodeError):
            continue
        # then none is reported broken
        assert check_toml(text) is None, path
        checked += 1
    assert checked >= 3


def test_config_error_is_ours_whatever_the_parser_says() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config('[admin]\ntoken = "t"\n[upstreams.monolith]\nurl = "http://h:1"\nurl = 2\n',
                     source="routes.toml")
    assert str(caught.value) == (
        'not valid TOML: duplicate key "url" (first set on line 4); each key may appear once '
        "per table (in routes.toml, line 5)"
    )
