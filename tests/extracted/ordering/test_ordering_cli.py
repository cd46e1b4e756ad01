"""``strangler ordering sagas`` and ``--context`` as a user runs them: one-line errors."""

from __future__ import annotations

import subprocess
from pathlib import Path

from conftest import STRANGLER, base_env


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*STRANGLER, *argv], env=base_env(), capture_output=True, text=True,
                          timeout=60, check=False)


def test_sagas_lists_none_on_a_fresh_database_and_says_what_to_do_on_an_empty_one(
        tmp_path: Path) -> None:
    empty = run("ordering", "sagas", "--data-dir", str(tmp_path / "empty"))
    assert empty.returncode == 2
    assert empty.stderr == ("strangler: error: cannot read the sagas: no such table: "
                            "ordering_checkoutsaga; run `strangler ordering migrate` or check "
                            "ORDERING_DATABASE_URL / --data-dir\n")
    assert run("ordering", "migrate", "--data-dir", str(tmp_path)).returncode == 0
    fresh = run("ordering", "sagas", "--data-dir", str(tmp_path))
    assert (fresh.returncode, fresh.stdout) == (0, "no saga is waiting\n")


def test_an_unknown_context_is_one_line_naming_the_known_ones(tmp_path: Path) -> None:
    done = run("reconcile", "--context", "shipping", "--source-db",
               f"sqlite:///{tmp_path / 'x.sqlite3'}")
    assert done.returncode == 2
    assert "context 'shipping' has no sync spec (known: catalog, ordering)" in done.stderr
    assert "Traceback" not in done.stderr
