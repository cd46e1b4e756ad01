"""Golden tests of SQL table extraction (tests/analysis/golden/sql_tables.sql)."""

from __future__ import annotations

from pathlib import Path

import pytest

from analysis.extract_tables import extract_tables, normalize_placeholders

GOLDEN = Path(__file__).parent / "golden" / "sql_tables.sql"


def _cases() -> list[tuple[str, str, dict[str, set[str]]]]:
    cases = []
    for block in GOLDEN.read_text().split("\n\n"):
        meta: dict[str, str] = {}
        sql: list[str] = []
        for line in block.strip().splitlines():
            if line.startswith("-- ") and ":" in line and not sql:
                key, _, value = line[3:].partition(":")
                meta[key.strip()] = value.strip()
            elif not line.startswith("--"):
                sql.append(line)
        if "dialect" in meta:
            expected = {k: {t.strip() for t in meta[k].split(",") if t.strip()}
                        for k in ("reads", "writes", "locks")}
            cases.append((meta["dialect"], "\n".join(sql), expected))
    return cases


CASES = _cases()


def test_golden_file_has_the_hard_cases() -> None:
    text = GOLDEN.read_text()
    for construct in ("WITH", "UPDATE a SET total = b.total FROM", "USING", "MERGE",
                      "INSERT INTO reporting_daily", "FOR UPDATE", "%s", "$1"):
        assert construct in text
    assert len({d for d, _, _ in CASES}) >= 4


@pytest.mark.parametrize(("dialect", "sql", "expected"), CASES,
                         ids=[f"{d}-{i}" for i, (d, _, _) in enumerate(CASES)])
def test_statement_reads_writes_and_locks_match_golden(dialect: str, sql: str,
                                                       expected: dict[str, set[str]]) -> None:
    access = extract_tables(sql, dialect)
    assert access.error is None
    assert set(access.reads) == expected["reads"]
    assert set(access.writes) == expected["writes"]
    assert set(access.locks) == expected["locks"]


def test_unparsable_statement_reports_the_parser_reason() -> None:
    access = extract_tables("SELEC * FROM WHERE", "postgres")
    assert access.error
    assert not access.reads
    assert not access.writes


def test_pyformat_placeholders_and_escaped_percent_are_normalised() -> None:
    sql = "SELECT * FROM t WHERE a = %s AND b = %(b)s AND c LIKE 'x%%'"
    assert normalize_placeholders(sql) == "SELECT * FROM t WHERE a = ? AND b = ? AND c LIKE 'x%'"
