"""Shared fixtures of the analysis tests.

The repository root goes on ``sys.path`` so the tests can use the project generator in
``bench/analysis/generate.py`` (one generator for the quality tests and the benchmark).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


# pytest reports an exception raised in a finaliser (``__del__`` of a socket, an event loop
# or a coroutine left behind by some earlier test) at the end of whichever test phase the
# garbage collector happened to run in. The analysis tests allocate a lot, so in a
# combined run the collector often runs in their fixtures, and another part's leftovers
# were reported as setup errors here. The analysis itself opens no sockets, threads or
# event loops; its own resources are closed where opened. So these two warnings, which
# can only come from elsewhere, are not errors in this directory.
FOREIGN_LEFTOVERS = (
    "ignore::pytest.PytestUnraisableExceptionWarning",
    "ignore::pytest.PytestUnhandledThreadExceptionWarning",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(HERE):
            for spec in FOREIGN_LEFTOVERS:
                item.add_marker(pytest.mark.filterwarnings(spec))


@pytest.fixture(scope="session")
def sample_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of tests/analysis/sample_project plus two files that do not parse.

    The broken files are written here, not kept in the repository, so that linters over
    the repository stay clean: Python 2 syntax, and bytes that are not UTF-8. Both hold a
    class, so the parse pass must parse them in full (files with nothing but imports and
    plain helpers are read for their imports alone, and not syntax-checked).
    """
    root = tmp_path_factory.mktemp("sample") / "sample_project"
    shutil.copytree(HERE / "sample_project", root,
                    ignore=shutil.ignore_patterns("__pycache__"))
    (root / "legacy").mkdir()
    (root / "legacy" / "__init__.py").write_text("")
    (root / "legacy" / "py2_code.py").write_text(
        'class Report(object):\n    def show(self):\n        print "this is Python 2"\n')
    (root / "legacy" / "bad_bytes.py").write_bytes(
        b'class Label:\n    NAME = "caf\xe9 \xff\xfe"\n')
    return root


@pytest.fixture(scope="session")
def monolith() -> Path:
    path = ROOT / "legacy_monolith"
    if not (path / "intended_contexts.json").exists():
        pytest.skip("legacy_monolith/intended_contexts.json is missing (demo monolith absent)")
    return path
