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


@pytest.fixture(scope="session")
def sample_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of tests/analysis/sample_project plus two files that do not parse.

    The broken files are written here, not kept in the repository, so that linters over
    the repository stay clean: Python 2 syntax, and bytes that are not UTF-8.
    """
    root = tmp_path_factory.mktemp("sample") / "sample_project"
    shutil.copytree(HERE / "sample_project", root,
                    ignore=shutil.ignore_patterns("__pycache__"))
    (root / "legacy").mkdir()
    (root / "legacy" / "__init__.py").write_text("")
    (root / "legacy" / "py2_code.py").write_text('print "this is Python 2"\n')
    (root / "legacy" / "bad_bytes.py").write_bytes(b'NAME = "caf\xe9 \xff\xfe"\n')
    return root


@pytest.fixture(scope="session")
def monolith() -> Path:
    path = ROOT / "legacy_monolith"
    if not (path / "intended_contexts.json").exists():
        pytest.skip("legacy_monolith/intended_contexts.json is missing (demo monolith absent)")
    return path
