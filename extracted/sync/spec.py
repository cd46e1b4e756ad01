"""What the catalog context is made of, on the producer's side and on the service's side.

One ``TableSpec`` per aggregate type: the monolith's table (read by the backfill and
reconcile), the service model that stores it, and the fields with their kinds (the kinds
drive the normalisation that makes both sides' rows comparable, see ``rows``). The order of
``CATALOG_TABLES`` is dependency order: parents before children.

``SIGNAL_SPECS`` are the facts the catalog shows but other contexts own (``in_stock`` from
inventory, ``rating`` from reviews). Their aggregate id is the product id; the backfill
computes them with the same rule as the monolith's product serializer (see docs/data-sync.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from extracted.sync.errors import BadEvent

KINDS = ("int", "str", "decimal", "bool", "datetime", "float")


@dataclass(frozen=True)
class FieldSpec:
    """One column: its attribute name (``category_id`` for a foreign key) and kind."""

    name: str
    kind: str
    nullable: bool = False


@dataclass(frozen=True)
class TableSpec:
    """One aggregate type of a context: where it lives on each side, and its fields."""

    aggregate_type: str
    source_table: str
    model: str
    fields: tuple[FieldSpec, ...]

    @property
    def field_names(self) -> tuple[str, ...]:
        """The field names, in spec order (the ``id`` is not one of them)."""
        return tuple(f.name for f in self.fields)


def _f(name: str, kind: str = "str", nullable: bool = False) -> FieldSpec:
    return FieldSpec(name, kind, nullable)


CATALOG_TABLES: tuple[TableSpec, ...] = (
    TableSpec("common.Tag", "common_tag", "Tag", (_f("name"), _f("slug"))),
    TableSpec(
        "store.Category", "store_category", "Category",
        (_f("name"), _f("slug"), _f("parent_id", "int", nullable=True)),
    ),
    TableSpec("store.Brand", "store_brand", "Brand", (_f("name"), _f("slug"), _f("country"))),
    TableSpec(
        "store.Product", "store_product", "Product",
        (
            _f("sku"), _f("name"), _f("slug"), _f("description"), _f("category_id", "int"),
            _f("brand_id", "int"), _f("price", "decimal"), _f("currency"),
            _f("is_active", "bool"), _f("created_at", "datetime"),
            _f("updated_at", "datetime"),
        ),
    ),
    TableSpec(
        "store.ProductImage", "store_productimage", "ProductImage",
        (_f("product_id", "int"), _f("url"), _f("position", "int")),
    ),
    TableSpec(
        "store.PriceHistory", "store_pricehistory", "PriceHistory",
        (_f("product_id", "int"), _f("amount", "decimal"), _f("currency"),
         _f("valid_from", "datetime")),
    ),
    TableSpec(
        "store.ProductTag", "store_producttag", "ProductTag",
        (_f("product_id", "int"), _f("tag_id", "int"), _f("added_at", "datetime")),
    ),
)

# Derived facts from other contexts, kept by the service in ``ProductSignals``.
STOCK_SIGNAL = TableSpec(
    "inventory.ProductStock", "store_stocklevel", "ProductSignals", (_f("in_stock", "bool"),)
)
RATING_SIGNAL = TableSpec(
    "reviews.ProductRating", "reviews_review", "ProductSignals",
    (_f("rating", "float", nullable=True),),
)
SIGNAL_SPECS: tuple[TableSpec, ...] = (STOCK_SIGNAL, RATING_SIGNAL)

ALL_SPECS: dict[str, TableSpec] = {s.aggregate_type: s for s in CATALOG_TABLES + SIGNAL_SPECS}


def spec_for(aggregate_type: str) -> TableSpec:
    """The spec of an aggregate type; an unknown type is a ``BadEvent`` naming the known ones.

    >>> spec_for("store.Brand").source_table
    'store_brand'
    """
    try:
        return ALL_SPECS[aggregate_type]
    except KeyError:
        known = ", ".join(sorted(ALL_SPECS))
        raise BadEvent(
            f"aggregate_type {aggregate_type!r} is not part of the catalog (known: {known})"
        ) from None
