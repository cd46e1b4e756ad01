"""Query log readers: each format yields statements with their request grouping."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from analysis.errors import UnreadableLog
from analysis.extract_tables import extract_tables
from analysis.mine_sql import fingerprint
from analysis.read_logs import read_query_log

LOGS = Path(__file__).parent / "logs"


def test_capture_jsonl_keeps_request_endpoint_and_transaction() -> None:
    statements = list(read_query_log(LOGS / "monolith_capture.jsonl"))
    raw = [json.loads(line) for line in
           (LOGS / "monolith_capture.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(statements) == len(raw)
    first = statements[0]
    assert first.request == raw[0]["request_id"]
    assert first.endpoint == "/" + raw[0]["route_pattern"].replace("<int:pk>", "{pk}")
    assert any(s.in_transaction for s in statements)
    assert all(s.sql for s in statements)


def test_capture_line_that_is_not_json_becomes_an_empty_statement(tmp_path: Path) -> None:
    log = tmp_path / "q.jsonl"
    log.write_text('{"sql": "SELECT 1", "request_id": "a"}\n{not json\n')
    statements = list(read_query_log(log))
    assert [s.sql for s in statements] == ["SELECT 1", ""]
    assert statements[1].source == "q.jsonl:2"


def test_postgres_stderr_joins_continuation_lines_and_groups_transactions() -> None:
    statements = list(read_query_log(LOGS / "postgres.log"))
    sqls = [s.sql for s in statements]
    assert len(statements) == 4  # BEGIN/COMMIT and the checkpoint line are not statements
    assert 'FROM "store_product" WHERE "store_product"."id" = 7' in sqls[0]
    assert sqls[1].startswith('UPDATE "store_stocklevel"')
    assert statements[0].request == statements[1].request is not None
    assert statements[2].request is None  # autocommit: a statement on its own
    assert extract_tables(statements[1].sql, "postgres").writes == {"store_stocklevel"}


def test_postgres_csvlog_groups_by_session_and_virtual_transaction() -> None:
    statements = list(read_query_log(LOGS / "postgres.csv"))
    assert [s.sql.split()[0] for s in statements] == ["SELECT", "INSERT"]
    assert statements[0].request == statements[1].request == "6565a1b2.1092/3/17"
    assert "WHERE" in statements[0].sql  # a multi-line quoted message


def test_mysql_general_log_groups_by_connection_between_begin_and_commit() -> None:
    statements = list(read_query_log(LOGS / "mysql_general.log"))
    assert len(statements) == 3
    assert "WHERE `reviews_review`.`product_id` = 3" in statements[0].sql
    assert statements[0].request == statements[1].request is not None
    assert statements[2].request is None
    assert extract_tables(statements[1].sql, "mysql").writes == {"store_product"}


def test_sql_file_splits_statements_and_drops_comments() -> None:
    statements = list(read_query_log(LOGS / "script.sql"))
    assert [s.sql.split()[0] for s in statements] == ["UPDATE", "DELETE", "SELECT"]
    assert statements[1].sql.endswith("interval '30 days'")


def test_unknown_format_and_missing_file_are_clear_errors(tmp_path: Path) -> None:
    odd = tmp_path / "odd.log"
    odd.write_text("hello world\n")
    with pytest.raises(UnreadableLog, match="format not recognised"):
        list(read_query_log(odd))
    with pytest.raises(UnreadableLog, match="cannot read query log"):
        list(read_query_log(tmp_path / "missing.log"))


def test_fingerprint_collapses_literals_placeholders_and_lists() -> None:
    a = fingerprint("SELECT * FROM t WHERE id IN (1, 2, 3) AND name = 'bob' LIMIT 21")
    b = fingerprint("SELECT * FROM t WHERE id IN (%s, %s) AND name = %s LIMIT 5")
    assert a == b == "SELECT * FROM t WHERE id IN (?) AND name = ? LIMIT ?"
    assert fingerprint("INSERT INTO t (a) VALUES (1), (2), (3)") == "INSERT INTO t (a) VALUES (?)"
    assert fingerprint('SELECT "t1"."id" FROM "t1"') == 'SELECT "t1"."id" FROM "t1"'
