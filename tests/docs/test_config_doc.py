"""docs/config.md's key tables follow from the dataclasses that declare each routes-file key."""

from __future__ import annotations

import difflib
from pathlib import Path

from strangler_proxy.config import SCHEMA, TABLES, with_key_tables

DOC = Path(__file__).resolve().parents[2] / "docs" / "config.md"


def test_every_key_table_in_the_doc_matches_the_declarations() -> None:
    # given the doc as committed
    text = DOC.read_text(encoding="utf-8")
    # when its key tables are regenerated from the dataclasses
    fresh = with_key_tables(text)
    # then nothing changes
    diff = "".join(difflib.unified_diff(text.splitlines(True), fresh.splitlines(True),
                                        "docs/config.md", "from the dataclasses"))
    assert not diff, ("docs/config.md drifted from the key declarations; regenerate it with "
                      "strangler_proxy.config.with_key_tables (see the doc's first list)"
                      f"\n{diff}")


def test_the_doc_has_a_table_for_every_table_of_the_file() -> None:
    text = DOC.read_text(encoding="utf-8")
    marked = {name for line in text.splitlines() if line.startswith("<!-- keys: ")
              for name in line.removeprefix("<!-- keys: ").removesuffix(" -->").split()}
    assert {n or "top" for n in TABLES} == marked
    assert set(SCHEMA) == set(TABLES)
