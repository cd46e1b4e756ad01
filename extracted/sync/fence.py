"""The write fence: a database refuses writes to the tables it no longer owns (contract 6).

Enforced by the database, so no code path (ORM, raw SQL, admin, a shell) gets around it:

* ``strangler_fence (table_name, context, open, fenced_at)``: one row per fenced table;
* on every fenced table, triggers that raise when the table has a fence row with
  ``open = 0`` (SQLite: ``BEFORE INSERT/UPDATE/DELETE`` row triggers with ``RAISE(ABORT)``;
  PostgreSQL: one statement-level ``BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE``
  trigger per table calling ``strangler_fence_check()``).

The triggers are installed once (``install``, idempotent, outside the write pause) and cost
one indexed lookup per statement while no fence row exists. ``fence`` and ``unfence`` only
insert and delete the rows. The one writer that may write a fenced table is the consumer of
the owner's events: it sets ``open = 1`` for its context inside its own transaction and back
to ``0`` before commit. Other transactions only ever see the committed ``0`` (SQLite has one
writer at a time; PostgreSQL readers see committed rows), and a crash rolls ``open`` back.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from extracted.sync.database import Database, check_identifier

FENCE_TABLE = "strangler_fence"
CREATE_TABLE = (
    f"CREATE TABLE IF NOT EXISTS {FENCE_TABLE} (table_name varchar(64) PRIMARY KEY, "
    "context varchar(64) NOT NULL, open integer NOT NULL DEFAULT 0, fenced_at varchar(40))"
)
PG_FUNCTION = f"""
CREATE OR REPLACE FUNCTION strangler_fence_check() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE owner_context text;
BEGIN
  SELECT context INTO owner_context FROM {FENCE_TABLE}
   WHERE table_name = TG_TABLE_NAME AND open = 0;
  IF FOUND THEN
    RAISE EXCEPTION '% is fenced: context % moved to its new owner (contract 6); write '
                    'through its owner, or undo the cutover', TG_TABLE_NAME, owner_context
      USING ERRCODE = '42501';
  END IF;
  RETURN NULL;
END $$
"""


def message(table: str, context: str) -> str:
    """The refusal a writer sees (SQLite's trigger text; PostgreSQL's says the same)."""
    return (f"{table} is fenced: context {context} moved to its new owner (contract 6); "
            "write through its owner, or undo the cutover")


def install(database: Database, tables: Iterable[str], context: str) -> int:
    """Create the fence table and the triggers on ``tables`` (idempotent); return how many."""
    names = [check_identifier(t, "table") for t in tables]
    database.query(CREATE_TABLE)
    if database.vendor == "postgresql":
        database.query(PG_FUNCTION)
        present = {r["tgrelid"] for r in database.query(
            "SELECT tgrelid::regclass::text AS tgrelid FROM pg_trigger "
            "WHERE tgname = 'strangler_fence'")}
        for table in names:
            if table not in present:
                database.query(f"CREATE TRIGGER strangler_fence BEFORE INSERT OR UPDATE OR "
                               f"DELETE OR TRUNCATE ON {table} FOR EACH STATEMENT EXECUTE "
                               "FUNCTION strangler_fence_check()")
        return len(names)
    for table in names:
        for op in ("INSERT", "UPDATE", "DELETE"):
            text = message(table, context).replace("'", "''")
            database.query(
                f"CREATE TRIGGER IF NOT EXISTS strangler_fence_{table}_{op.lower()} BEFORE {op} "
                f"ON {table} WHEN EXISTS (SELECT 1 FROM {FENCE_TABLE} WHERE table_name = "
                f"'{table}' AND open = 0) BEGIN SELECT RAISE(ABORT, '{text}'); END")
    return len(names)


def fence(database: Database, tables: Iterable[str], context: str) -> None:
    """Refuse every write to ``tables`` from now on (one transaction)."""
    now = datetime.now(UTC).isoformat()
    with database.transaction():
        for table in tables:
            database.query(f"DELETE FROM {FENCE_TABLE} WHERE table_name = ?", [table])  # noqa: S608
            database.query(f"INSERT INTO {FENCE_TABLE} (table_name, context, open, fenced_at) "  # noqa: S608
                           "VALUES (?, ?, 0, ?)", [table, context, now])


def unfence(database: Database, context: str) -> None:
    """Accept writes to the context's tables again."""
    database.query(f"DELETE FROM {FENCE_TABLE} WHERE context = ?", [context])  # noqa: S608


def fenced(database: Database, context: str) -> list[str]:
    """The context's fenced tables (empty when the fence table does not exist yet)."""
    try:
        rows = database.query(f"SELECT table_name FROM {FENCE_TABLE} WHERE context = ? "  # noqa: S608
                              "ORDER BY table_name", [context])
    except Exception:  # noqa: BLE001 - no fence table: nothing is fenced
        return []
    return [r["table_name"] for r in rows]
