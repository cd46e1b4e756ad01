"""A stand-in producer for the sync tests: the catalog tables and an outbox, nothing else.

A FAKE of the monolith, on purpose: it writes a catalog change and its outbox event in one
transaction exactly as contract 5 says, so the relay, backfill and reconcile can be tested
fast on SQLite and PostgreSQL without the whole shop. The tests that use the real monolith
(its outbox app and workload generator) live in ``test_nothing_lost_monolith.py``.
"""

from __future__ import annotations

import json
import random
import sqlite3
import uuid
from datetime import UTC, datetime
from typing import Any

from extracted.sync.spec import CATALOG_TABLES, spec_for

SQL_TYPES = {
    "sqlite": {"int": "integer", "str": "text", "decimal": "decimal", "bool": "bool",
               "datetime": "datetime", "float": "real"},
    "postgresql": {"int": "bigint", "str": "text", "decimal": "numeric(10,2)",
                   "bool": "boolean", "datetime": "timestamptz", "float": "double precision"},
}


class FakeShop:
    """Catalog tables + stock levels + reviews + ``outbox_outboxevent`` in one database."""

    def __init__(self, url: str, seed: int = 7) -> None:
        self.url = url
        self.vendor = "sqlite" if url.startswith("sqlite") else "postgresql"
        self.rng = random.Random(seed)
        self.conn = self._connect()
        self.next_id: dict[str, int] = {}
        self.live: dict[str, set[int]] = {s.aggregate_type: set() for s in CATALOG_TABLES}

    def _connect(self) -> Any:
        if self.vendor == "sqlite":
            conn = sqlite3.connect(self.url.removeprefix("sqlite:///"), timeout=30,
                                   isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            return conn
        import psycopg

        return psycopg.connect(self.url, autocommit=True)

    def _sql(self, sql: str) -> str:
        return sql if self.vendor == "sqlite" else sql.replace("?", "%s")

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        cursor = self.conn.execute(self._sql(sql), params)
        return list(cursor.fetchall()) if cursor.description else []

    def create_schema(self) -> None:
        types = SQL_TYPES[self.vendor]
        serial = "integer PRIMARY KEY AUTOINCREMENT" if self.vendor == "sqlite" else (
            "bigserial PRIMARY KEY")
        for spec in CATALOG_TABLES:
            cols = ", ".join(f"{f.name} {types[f.kind]}" for f in spec.fields)
            self.execute(f"CREATE TABLE {spec.source_table} (id bigint PRIMARY KEY, {cols})")
        self.execute("CREATE TABLE store_stocklevel (id bigint PRIMARY KEY, product_id bigint, "
                     "quantity integer)")
        self.execute("CREATE TABLE reviews_review (id bigint PRIMARY KEY, product_id bigint, "
                     "rating integer, status text)")
        payload = "text" if self.vendor == "sqlite" else "jsonb"
        self.execute(
            f"CREATE TABLE outbox_outboxevent (id {serial}, event_id varchar(64) UNIQUE, "
            "aggregate_type varchar(64), aggregate_id varchar(64), sequence bigint, "
            f"event_type varchar(16), payload {payload}, occurred_at {types['datetime']})"
        )
        # the producer's counter per aggregate, as the monolith's outbox app keeps it
        self.execute("CREATE TABLE outbox_aggregatesequence (id " + serial + ", aggregate_type "
                     "varchar(64), aggregate_id varchar(64), last bigint, UNIQUE "
                     "(aggregate_type, aggregate_id))")

    # --- writes, each with its event in one transaction --------------------------------

    def _new_id(self, aggregate_type: str) -> int:
        self.next_id[aggregate_type] = self.next_id.get(aggregate_type, 0) + 1
        return self.next_id[aggregate_type]

    def change(self, aggregate_type: str, key: int, fields: dict[str, Any] | None,
               event_type: str = "updated", with_event: bool = True) -> None:
        """Upsert (or, with ``fields=None``, delete) a row and write its event."""
        spec = spec_for(aggregate_type)
        self.execute("BEGIN")
        try:
            if spec.aggregate_type.startswith("store.") or spec.aggregate_type == "common.Tag":
                self._write_row(spec.source_table, key, fields, spec.field_names)
            if with_event:
                self._event(aggregate_type, key, event_type if fields is not None else "deleted",
                            fields if fields is not None else {})
            self.execute("COMMIT")
        except BaseException:
            self.execute("ROLLBACK")
            raise
        live = self.live.setdefault(aggregate_type, set())
        (live.discard if fields is None else live.add)(key)

    def _write_row(self, table: str, key: int, fields: dict[str, Any] | None,
                   names: tuple[str, ...]) -> None:
        self.execute(f"DELETE FROM {table} WHERE id = ?", (key,))
        if fields is not None:
            marks = ", ".join("?" * (len(names) + 1))
            self.execute(f"INSERT INTO {table} (id, {', '.join(names)}) VALUES ({marks})",
                         (key, *[fields[n] for n in names]))

    def _event(self, aggregate_type: str, key: int, event_type: str,
               payload: dict[str, Any]) -> None:
        rows = self.execute(
            "INSERT INTO outbox_aggregatesequence (aggregate_type, aggregate_id, last) VALUES "
            "(?, ?, 1) ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE SET last = "
            "outbox_aggregatesequence.last + 1 RETURNING last", (aggregate_type, str(key)))
        sequence = int(rows[0][0])
        body = json.dumps({k: _jsonable(v) for k, v in payload.items()})
        self.execute(
            "INSERT INTO outbox_outboxevent (event_id, aggregate_type, aggregate_id, sequence, "
            "event_type, payload, occurred_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (str(uuid.uuid4()), aggregate_type, str(key), sequence, event_type, body,
             _now_text() if self.vendor == "sqlite" else datetime.now(UTC)),
        )

    # --- a random but reproducible workload ---------------------------------------------

    def populate(self, products: int, with_events: bool = True) -> None:
        """Categories, brands, tags and ``products`` products (optionally without events)."""
        for _ in range(3):
            self.create("store.Category", with_event=with_events)
            self.create("store.Brand", with_event=with_events)
            self.create("common.Tag", with_event=with_events)
        for _ in range(products):
            self.create("store.Product", with_event=with_events)

    def create(self, aggregate_type: str, with_event: bool = True) -> int:
        key = self._new_id(aggregate_type)
        self.change(aggregate_type, key, self._fields(aggregate_type, key), "created",
                    with_event)
        return key

    def _fields(self, aggregate_type: str, key: int) -> dict[str, Any]:
        rng, now = self.rng, _now_text() if self.vendor == "sqlite" else datetime.now(UTC)
        pick = lambda kind: rng.choice(sorted(self.live[kind]))  # noqa: E731
        price = f"{rng.randint(100, 9999) / 100:.2f}"
        return {
            "common.Tag": lambda: {"name": f"tag {key}", "slug": f"tag-{key}"},
            "store.Category": lambda: {"name": f"cat {key}", "slug": f"cat-{key}",
                                       "parent_id": None if key == 1 else 1},
            "store.Brand": lambda: {"name": f"brand {key}", "slug": f"brand-{key}",
                                    "country": "DE"},
            "store.Product": lambda: {
                "sku": f"SKU-{key}", "name": f"product {key}", "slug": f"product-{key}",
                "description": "d" * rng.randint(0, 40), "category_id": pick("store.Category"),
                "brand_id": pick("store.Brand"), "price": price, "currency": "EUR",
                "is_active": rng.random() > 0.1, "created_at": now, "updated_at": now},
            "store.ProductImage": lambda: {"product_id": pick("store.Product"),
                                           "url": f"https://img.test/{key}.jpg",
                                           "position": rng.randint(0, 5)},
            "store.PriceHistory": lambda: {"product_id": pick("store.Product"), "amount": price,
                                           "currency": "EUR", "valid_from": now},
            "store.ProductTag": lambda: {"product_id": pick("store.Product"),
                                         "tag_id": pick("common.Tag"), "added_at": now},
        }[aggregate_type]()

    def random_change(self) -> None:
        """One change a shop's staff or shoppers would cause."""
        roll = self.rng.random()
        products = sorted(self.live["store.Product"])
        if roll < 0.25 or len(products) < 5:
            self.create("store.Product")
        elif roll < 0.55:
            key = self.rng.choice(products)
            fields = dict(self._fields("store.Product", key))
            self.change("store.Product", key, fields)
        elif roll < 0.62:
            self._delete_product(self.rng.choice(products))
        elif roll < 0.72:
            self.create(self.rng.choice(["store.ProductImage", "store.PriceHistory",
                                         "store.ProductTag"]))
        elif roll < 0.86:
            self.stock(self.rng.choice(products), self.rng.randint(0, 3))
        else:
            self.review(self.rng.choice(products), self.rng.randint(1, 5))

    def _delete_product(self, key: int) -> None:
        for kind in ("store.ProductImage", "store.PriceHistory", "store.ProductTag"):
            table = spec_for(kind).source_table
            for (child,) in self.execute(f"SELECT id FROM {table} WHERE product_id = ?",
                                         (key,)):
                self.change(kind, int(child), None)
        self.change("store.Product", key, None)

    def stock(self, product_id: int, quantity: int) -> None:
        """Set a product's one stock level and publish its in-stock signal."""
        self.execute("BEGIN")
        self.execute("DELETE FROM store_stocklevel WHERE id = ?", (product_id,))
        self.execute("INSERT INTO store_stocklevel (id, product_id, quantity) VALUES (?, ?, ?)",
                     (product_id, product_id, quantity))
        self._event("inventory.ProductStock", product_id, "updated", {"in_stock": quantity > 0})
        self.execute("COMMIT")

    def review(self, product_id: int, rating: int) -> None:
        """Add an approved review and publish the product's new average rating."""
        self.execute("BEGIN")
        key = self._new_id("review")
        self.execute("INSERT INTO reviews_review (id, product_id, rating, status) VALUES "
                     "(?, ?, ?, 'approved')", (key, product_id, rating))
        rows = self.execute("SELECT AVG(rating) FROM reviews_review WHERE product_id = ? AND "
                            "status = 'approved'", (product_id,))
        self._event("reviews.ProductRating", product_id, "updated",
                    {"rating": float(rows[0][0])})
        self.execute("COMMIT")

    def outbox_count(self) -> int:
        return int(self.execute("SELECT count(*) FROM outbox_outboxevent")[0][0])

    def event_ids(self) -> set[str]:
        return {r[0] for r in self.execute("SELECT event_id FROM outbox_outboxevent")}

    def close(self) -> None:
        self.conn.close()


def _now_text() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return value
