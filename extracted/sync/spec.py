"""What each extracted context is made of, on the producer's side and on the service's side.

Declarative: one ``ContextSpec`` per context (catalog, ordering), and the sync code (backfill,
reconcile, repair, fence, cutover, the services' apply) reads nothing else. One
``TableSpec`` per aggregate type: the monolith's table (read by the backfill and
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
    """One aggregate type of a context: where it lives on each side, and its fields.

    ``source_sql`` is set for a derived fact: the query (keyed ``id``) that computes it from
    the owner's tables, with the same rule as the owner's code; ``keyed_by`` names the
    service model with one implied row of the fact per row (a product without a stock fact
    shows ``in_stock: false``). ``app_label`` is the service's Django app.
    """

    aggregate_type: str
    source_table: str
    model: str
    fields: tuple[FieldSpec, ...]
    source_sql: str = ""
    app_label: str = "catalog"
    keyed_by: str = ""

    @property
    def target_table(self) -> str:
        """The service's table (Django's default name for ``<app_label>.<model>``)."""
        return f"{self.app_label}_{self.model.lower()}"

    @property
    def derived(self) -> bool:
        """True for a fact another context owns (computed, not copied)."""
        return bool(self.source_sql)

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
    "inventory.ProductStock", "store_stocklevel", "ProductSignals", (_f("in_stock", "bool"),),
    source_sql="SELECT p.id AS id, EXISTS (SELECT 1 FROM store_stocklevel s WHERE "
               "s.product_id = p.id AND s.quantity > 0) AS in_stock FROM store_product p",
    keyed_by="Product",
)
RATING_SIGNAL = TableSpec(
    "reviews.ProductRating", "reviews_review", "ProductSignals",
    (_f("rating", "float", nullable=True),),
    source_sql="SELECT p.id AS id, (SELECT AVG(r.rating) FROM reviews_review r WHERE "
               "r.product_id = p.id AND r.status = 'approved') AS rating FROM store_product p",
    keyed_by="Product",
)
SIGNAL_SPECS: tuple[TableSpec, ...] = (STOCK_SIGNAL, RATING_SIGNAL)


@dataclass(frozen=True)
class ContextSpec:
    """Everything the sync needs to know about one bounded context, declared once.

    The next extraction adds one of these (its tables in dependency order, its derived
    facts as SQL, the service's endpoints), not code: backfill, reconcile, repair, the
    fence, the cutover and the services' apply (``extracted.servicekit``) all read it.
    ``references`` are other contexts' rows the service keeps a read-only copy of (never
    moved at cutover); ``ignores`` are aggregate types on the same stream that are not the
    context's business (acknowledged, never applied, never dead letters). ``reverse_path``
    is where the monolith takes the service's outbox (the reverse stream, named after the
    context), which the cutover drains.
    """

    name: str
    tables: tuple[TableSpec, ...]
    signals: tuple[TableSpec, ...] = ()
    references: tuple[TableSpec, ...] = ()
    ignores: frozenset[str] = frozenset()
    outbox_table: str = "outbox_outboxevent"
    sequence_table: str = "outbox_aggregatesequence"
    service_outbox_table: str = "catalog_outboxevent"
    service_sequence_table: str = "catalog_aggregateversion"
    routes: tuple[str, ...] = ()
    reverse_path: str = "/internal/catalog-events/"

    @property
    def specs(self) -> tuple[TableSpec, ...]:
        """References, tables, then derived facts: the order of a copy."""
        return self.references + self.tables + self.signals

    @property
    def app_label(self) -> str:
        """The service's Django app (every spec of a context names the same one)."""
        return self.specs[0].app_label

    def spec_for(self, aggregate_type: str) -> TableSpec:
        """The spec of one of this context's aggregate types; else a ``BadEvent``.

        >>> CATALOG.spec_for("store.Brand").source_table
        'store_brand'
        """
        for spec in self.specs:
            if spec.aggregate_type == aggregate_type:
                return spec
        known = ", ".join(sorted(s.aggregate_type for s in self.specs))
        raise BadEvent(f"aggregate_type {aggregate_type!r} is not part of the {self.name} "
                       f"context (known: {known})")

    @property
    def moved_tables(self) -> tuple[str, ...]:
        """The owner's tables whose writer changes at cutover (the fenced ones)."""
        return tuple(t.source_table for t in self.tables)

    @property
    def aggregate_types(self) -> frozenset[str]:
        """The aggregate types the context owns (derived facts excluded)."""
        return frozenset(t.aggregate_type for t in self.tables)


# The monolith's outbox also carries ordering's rows, the saga's replies and the availability
# fact: not the catalog's business (acknowledged, never dead letters).
CATALOG = ContextSpec("catalog", CATALOG_TABLES, SIGNAL_SPECS,
                      ignores=frozenset({"orders.Coupon", "orders.Cart", "orders.CartItem",
                                         "orders.Order", "orders.OrderLine",
                                         "payments.CheckoutReply",
                                         "inventory.ProductAvailability"}),
                      routes=("catalog", "catalog-categories", "catalog-brands"))


def _o(aggregate_type: str, model: str, fields: tuple[FieldSpec, ...]) -> TableSpec:
    app, _, name = aggregate_type.partition(".")
    return TableSpec(aggregate_type, f"{app}_{name.lower()}", model, fields,
                     app_label="ordering")


# Ordering: carts, orders and their lines, coupons (the report's ordering context). Products
# are a reference: a read-only copy of the catalog's rows (the fields an order line shows),
# refreshed by the catalog's events on the same stream; the rest of the catalog's events
# are acknowledged and ignored. Availability is a derived fact (inventory's units on hand,
# the rule of ``store.actions.available_quantity``), for checkout's stock check.
ORDERING_PRODUCT = _o("store.Product", "Product", (
    _f("sku"), _f("name"), _f("price", "decimal"), _f("is_active", "bool")))
ORDERING_TABLES: tuple[TableSpec, ...] = (
    _o("orders.Coupon", "Coupon", (_f("code"), _f("percent_off", "int"), _f("active", "bool"))),
    _o("orders.Cart", "Cart", (_f("user_id", "int", nullable=True), _f("session_key"),
                               _f("created_at", "datetime"), _f("updated_at", "datetime"))),
    _o("orders.CartItem", "CartItem", (_f("cart_id", "int"), _f("product_id", "int"),
                                       _f("quantity", "int"))),
    _o("orders.Order", "Order", (
        _f("number"), _f("user_id", "int"), _f("status"),
        _f("shipping_address_id", "int", nullable=True), _f("total", "decimal"),
        _f("currency"), _f("coupon_id", "int", nullable=True), _f("created_at", "datetime"),
        _f("updated_at", "datetime"))),
    _o("orders.OrderLine", "OrderLine", (
        _f("order_id", "int"), _f("product_id", "int"), _f("product_name"),
        _f("unit_price", "decimal"), _f("quantity", "int"))),
)
AVAILABILITY = TableSpec(
    "inventory.ProductAvailability", "store_stocklevel", "ProductAvailability",
    (_f("available", "int"),),
    source_sql="SELECT p.id AS id, (SELECT COALESCE(SUM(s.quantity), 0) FROM store_stocklevel "
               "s WHERE s.product_id = p.id AND s.quantity > 0) AS available "
               "FROM store_product p",
    app_label="ordering", keyed_by="Product",
)
ORDERING = ContextSpec(
    "ordering", ORDERING_TABLES, (AVAILABILITY,), references=(ORDERING_PRODUCT,),
    ignores=frozenset(t.aggregate_type for t in CATALOG.specs) - {"store.Product"},
    service_outbox_table="ordering_outboxevent",
    service_sequence_table="ordering_aggregateversion",
    routes=("ordering", "ordering-cart", "ordering-checkout", "ordering-coupons", "order-pay"),
    reverse_path="/internal/saga-events/",  # the saga's requests and the service's rows
)
CONTEXTS: dict[str, ContextSpec] = {c.name: c for c in (CATALOG, ORDERING)}


def context_for(name: str) -> ContextSpec:
    """The spec of a context by name; an unknown name is an error listing the known ones."""
    try:
        return CONTEXTS[name]
    except KeyError:
        raise BadEvent(f"context {name!r} has no sync spec (known: "
                       f"{', '.join(sorted(CONTEXTS))}); add a ContextSpec in "
                       "extracted/sync/spec.py") from None


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
