"""Pass 1: find the Python files of the project and decide it is a Django project."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from analysis.errors import NotADjangoProject
from analysis.state import Analysis

SKIP_DIRS = frozenset({".git", ".hg", ".svn", "__pycache__", "node_modules", ".venv", "venv",
                       ".tox", ".mypy_cache", ".ruff_cache", ".pytest_cache", "site-packages",
                       ".strangler-cache", "build", "dist"})
MAX_FILE_BYTES = 2_000_000  # generated files above this are skipped and listed


def collect_files(a: Analysis) -> Analysis:
    """List ``*.py`` files under the root, skipping VCS, virtualenv and cache directories.

    Raises :class:`NotADjangoProject` when the path is missing, holds no Python, or nothing
    in it looks like Django (no ``manage.py``, no ``settings``, no ``models`` module).
    """
    root = a.options.root
    if not root.is_dir():
        raise NotADjangoProject(
            f"{root}: not a directory; pass the folder that holds the Django project")
    files: list[Path] = []
    skipped: list[tuple[str, str]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.startswith("."))
        for name in sorted(filenames):
            if not name.endswith(".py"):
                continue
            path = Path(dirpath) / name
            if path.stat().st_size > MAX_FILE_BYTES:
                skipped.append((str(path.relative_to(root)), "file larger than 2 MB"))
                continue
            files.append(path)
    if not any(_django_marker(p) for p in files):
        raise NotADjangoProject(
            f"{root}: no Django project found (no manage.py, settings.py, models.py or "
            "models/ package); pass the folder that holds manage.py or your apps")
    return replace(a, files=tuple(files), skipped=tuple(skipped))


def _django_marker(path: Path) -> bool:
    return path.name in {"manage.py", "settings.py", "models.py", "apps.py"} or (
        path.parent.name == "models" or path.parent.name == "settings")
