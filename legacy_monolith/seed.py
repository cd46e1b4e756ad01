"""Deterministic demo data: the same ``--seed`` gives the same shop, row for row.

``small`` (tests, demo) seeds in a few seconds; ``large`` (benchmarks) holds >= 10,000
products and >= 50,000 orders, written with ``bulk_create`` in batches. Seeding first
empties the shop's tables (sequences reset), so running it twice gives the same ids.
Timestamps (``created_at``) are the only values that differ between runs.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

from django.apps import apps
from django.contrib.auth.hashers import make_password
from django.core.management.color import no_style
from django.db import connection, models, transaction
from rest_framework.authtoken.models import Token

from legacy_monolith.accounts.models import (
    Address,
    LoyaltyAccount,
    LoyaltyTransaction,
    User,
)
from legacy_monolith.common.models import Tag
from legacy_monolith.notifications.actions import DEFAULT_TEMPLATES
from legacy_monolith.notifications.models import EmailTemplate, NotificationPreference
from legacy_monolith.orders.models import (
    Carrier,
    Coupon,
    Order,
    OrderLine,
    PaymentIntent,
    Shipment,
    ShipmentLine,
    TrackingEvent,
)
from legacy_monolith.outbox import publish as outbox
from legacy_monolith.reviews.models import ModerationDecision, Review
from legacy_monolith.store.models import (
    Brand,
    Category,
    PriceHistory,
    Product,
    ProductImage,
    ProductTag,
    StockLevel,
    StockReservation,
    Warehouse,
)
from legacy_monolith.utils import money, order_number, tracking_number

M = TypeVar("M", bound=models.Model)
T = TypeVar("T")
SHOP_APPS = ("common", "accounts", "store", "orders", "reviews", "notifications", "authtoken")
BATCH = 2000
EPOCH = datetime(2024, 1, 1, tzinfo=UTC)

STAFF = ("staff", "staff-password")
ALICE = ("alice", "alice-password")
SHOPPER_PASSWORD = "shopper-password"  # noqa: S105 - demo credentials, documented


@dataclass(frozen=True)
class SeedSize:
    """How much of everything to create."""

    name: str
    products: int
    orders: int
    shoppers: int
    categories: int
    brands: int
    reviews: int


SIZES: dict[str, SeedSize] = {
    "tiny": SeedSize("tiny", products=20, orders=15, shoppers=5, categories=4, brands=3,
                     reviews=20),
    "small": SeedSize("small", products=200, orders=300, shoppers=40, categories=12, brands=15,
                      reviews=400),
    "large": SeedSize("large", products=10_000, orders=50_000, shoppers=2_000, categories=60,
                      brands=120, reviews=20_000),
}


@dataclass
class SeedReport:
    """What was written, how long each phase took, and the demo users' tokens."""

    size: str
    seed: int
    counts: dict[str, int] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def total_seconds(self) -> float:
        return sum(self.timings.values())


ADJECTIVES = ("Classic", "Ultra", "Compact", "Eco", "Smart", "Vintage", "Pro", "Mini", "Deluxe",
              "Rugged", "Silent", "Bright")
NOUNS = ("Kettle", "Lamp", "Backpack", "Headphones", "Notebook", "Mug", "Chair", "Jacket",
         "Blender", "Watch", "Speaker", "Tent", "Novel", "Camera", "Bottle", "Keyboard")
DEPARTMENTS = ("home", "outdoor", "electronics", "books", "fashion", "kitchen", "office",
               "sports")
COUNTRIES = ("DE", "FR", "NL", "ES", "IT", "PL", "SE", "US", "JP", "GB")
CITIES = ("Amsterdam", "Berlin", "Madrid", "Warsaw", "Lyon", "Milan")
WAREHOUSES = (("AMS", "Amsterdam"), ("BER", "Berlin"), ("MAD", "Madrid"), ("WAW", "Warsaw"))
CARRIERS = (("dhl", "DHL"), ("ups", "UPS"), ("postnl", "PostNL"))
TAGS = ("new", "sale", "bestseller", "gift", "eco", "limited", "bundle", "premium", "clearance",
        "handmade", "imported", "refurbished")
STATUSES = (("pending", 20), ("paid", 30), ("shipped", 40), ("cancelled", 10))


def token_for(seed: int, username: str) -> str:
    """The deterministic API token of a seeded user (40 hex characters)."""
    return hashlib.sha1(f"strangler-demo:{seed}:{username}".encode()).hexdigest()


def clear_shop() -> None:
    """Empty every table of the shop's apps and reset their id sequences."""
    tables = [
        model._meta.db_table
        for app in SHOP_APPS
        for model in apps.get_app_config(app).get_models(include_auto_created=True)
    ]
    statements = connection.ops.sql_flush(
        no_style(), tables, reset_sequences=True, allow_cascade=True
    )
    if connection.vendor == "postgresql":
        # TRUNCATE refuses tables with pending deferred-FK trigger events (rows written
        # earlier in the same transaction, e.g. a test's); check them now to clear them.
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    connection.ops.execute_sql_flush(statements)


def _bulk(model: type[M], rows: Iterable[M]) -> list[M]:
    created: list[M] = []
    batch: list[M] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= BATCH:
            created.extend(model.objects.bulk_create(batch))  # type: ignore[attr-defined]
            batch = []
    if batch:
        created.extend(model.objects.bulk_create(batch))  # type: ignore[attr-defined]
    return created


def _weighted(rng: random.Random, choices: Sequence[tuple[str, int]]) -> str:
    return rng.choices([c for c, _ in choices], weights=[w for _, w in choices])[0]


def seed_reference(rng: random.Random, size: SeedSize) -> dict[str, list[Any]]:
    """Tags, categories, brands, warehouses, carriers, coupons, templates."""
    tags = _bulk(Tag, (Tag(name=t.title(), slug=t) for t in TAGS))
    parents = _bulk(Category, (Category(name=d.title(), slug=d) for d in DEPARTMENTS[:4]))
    children = _bulk(Category, (
        Category(name=f"{DEPARTMENTS[i % len(DEPARTMENTS)].title()} {i}",
                 slug=f"{DEPARTMENTS[i % len(DEPARTMENTS)]}-{i}", parent=rng.choice(parents))
        for i in range(max(size.categories - len(parents), 0))
    ))
    brands = _bulk(Brand, (
        Brand(name=f"Brand {i:03d}", slug=f"brand-{i:03d}", country=rng.choice(COUNTRIES))
        for i in range(size.brands)
    ))
    warehouses = _bulk(Warehouse, (
        Warehouse(code=code, name=f"{city} DC", city=city) for code, city in WAREHOUSES
    ))
    carriers = _bulk(Carrier, (Carrier(code=c, name=n) for c, n in CARRIERS))
    coupons = _bulk(Coupon, (
        Coupon(code=f"SAVE{p}", percent_off=p, active=p != 50) for p in (5, 10, 20, 50)
    ))
    _bulk(EmailTemplate, (
        EmailTemplate(code=code, subject=s, body=b) for code, (s, b) in DEFAULT_TEMPLATES.items()
    ))
    return {"tags": tags, "categories": parents + children, "brands": brands,
            "warehouses": warehouses, "carriers": carriers, "coupons": coupons}


def seed_users(rng: random.Random, size: SeedSize, seed: int) -> tuple[list[User], SeedReport]:
    """Staff, alice and the shoppers, each with an address, loyalty account and preferences."""
    report = SeedReport(size=size.name, seed=seed)
    shopper_hash = make_password(SHOPPER_PASSWORD)
    people = [
        User(username=STAFF[0], email="staff@example.com", is_staff=True, is_superuser=True,
             password=make_password(STAFF[1]), first_name="Sam", last_name="Staff"),
        User(username=ALICE[0], email="alice@example.com", password=make_password(ALICE[1]),
             first_name="Alice", last_name="Shopper", loyalty_tier="silver"),
    ]
    people += [
        User(username=f"shopper{i:04d}", email=f"shopper{i:04d}@example.com",
             password=shopper_hash, loyalty_tier=_weighted(
                 rng, (("bronze", 70), ("silver", 25), ("gold", 5))))
        for i in range(1, size.shoppers + 1)
    ]
    users = _bulk(User, people)
    _bulk(Address, (
        Address(user=u, line1=f"{rng.randint(1, 300)} Main Street", city=rng.choice(CITIES),
                postcode=f"{rng.randint(1000, 9999)}", country=rng.choice(COUNTRIES[:6]),
                is_default=True)
        for u in users
    ))
    _bulk(LoyaltyAccount, (LoyaltyAccount(user=u) for u in users))
    _bulk(NotificationPreference, (
        NotificationPreference(user=u, email_opt_in=rng.random() > 0.1) for u in users
    ))
    tokens = _bulk(Token, (Token(user=u, key=token_for(seed, u.username)) for u in users[:2]))
    report.tokens = {t.user.username: t.key for t in tokens}
    return users, report


def seed_catalog(rng: random.Random, size: SeedSize, ref: dict[str, list[Any]]) -> list[Product]:
    """Products with tags, images, price history and stock in 1-3 warehouses."""
    products = _bulk(Product, (_product(rng, i, ref) for i in range(1, size.products + 1)))
    _bulk(ProductTag, (
        ProductTag(product=p, tag=t)
        for p in products for t in rng.sample(ref["tags"], rng.randint(0, 3))
    ))
    _bulk(ProductImage, (
        ProductImage(product=p, url=f"https://img.example.com/{p.sku.lower()}/{n}.jpg",
                     position=n)
        for p in products for n in range(rng.randint(1, 2))
    ))
    _bulk(PriceHistory, (
        PriceHistory(product=p, amount=money(p.price * Decimal("1.1")), currency=p.currency,
                     valid_from=EPOCH + timedelta(days=rng.randint(0, 300)))
        for p in products
    ))
    _bulk(StockLevel, (
        StockLevel(product=p, warehouse=w, quantity=rng.choice((0, 5, 20, 50, 200)))
        for p in products for w in rng.sample(ref["warehouses"], rng.randint(1, 3))
    ))
    return products


def _product(rng: random.Random, i: int, ref: dict[str, list[Any]]) -> Product:
    name = f"{rng.choice(ADJECTIVES)} {rng.choice(NOUNS)} {i}"
    return Product(
        sku=f"SKU-{i:06d}", name=name, slug=f"{name.lower().replace(' ', '-')}",
        description=f"The {name}: a dependable choice.", category=rng.choice(ref["categories"]),
        brand=rng.choice(ref["brands"]), price=money(Decimal(rng.randint(299, 49999)) / 100),
        is_active=rng.random() > 0.05,
    )


def seed_orders(rng: random.Random, size: SeedSize, users: list[User],
                products: list[Product], ref: dict[str, list[Any]]) -> list[Order]:
    """Orders in every status, their lines, payments, reservations and shipments."""
    shoppers = users[1:]
    address_of = dict(Address.objects.order_by("user_id", "-id").values_list("user_id", "id"))
    plans = []
    for i in range(1, size.orders + 1):
        lines = [(p, rng.randint(1, 3)) for p in rng.sample(products, rng.randint(1, 4))]
        total = money(sum((p.price * q for p, q in lines), Decimal(0)))
        user = rng.choice(shoppers)
        plans.append((Order(number=order_number(i), user=user,
                            shipping_address_id=address_of.get(user.pk),
                            status=_weighted(rng, STATUSES), total=total), lines))
    orders = _bulk(Order, (order for order, _ in plans))
    _fix_numbers(orders)
    order_lines = _bulk(OrderLine, (
        OrderLine(order=o, product=p, product_name=p.name, unit_price=p.price, quantity=q)
        for o, (_, lines) in zip(orders, plans, strict=True) for p, q in lines
    ))
    _seed_payments(orders)
    _seed_reservations(order_lines)
    _seed_shipments(rng, orders, order_lines, ref["carriers"])
    _seed_loyalty(orders)
    return orders


def _fix_numbers(orders: list[Order]) -> None:
    # Sequences restart at 1 after clear_shop(), so numbers match ids; if a backend ever
    # hands out other ids, renumber so `order_number(pk)` stays the rule.
    wrong = [o for o in orders if o.number != order_number(o.pk)]
    for order in wrong:
        order.number = order_number(order.pk)
    Order.objects.bulk_update(wrong, ["number"], batch_size=BATCH)


def _seed_payments(orders: list[Order]) -> None:
    paid = {"paid": "succeeded", "shipped": "succeeded", "cancelled": "refunded"}
    _bulk(PaymentIntent, (
        PaymentIntent(order=o, amount=o.total, status=paid[o.status],
                      provider_ref=f"card_{hashlib.sha1(o.number.encode()).hexdigest()[:16]}")
        for o in orders if o.status in paid
    ))


def _seed_reservations(lines: list[OrderLine]) -> None:
    first_level = dict(
        StockLevel.objects.order_by("product_id", "-id").values_list("product_id", "id")
    )
    _bulk(StockReservation, (
        StockReservation(stock_level_id=first_level[ln.product_id], order_line=ln,
                         quantity=ln.quantity)
        for ln in lines if ln.order.status in ("paid", "shipped")
    ))


def _seed_shipments(rng: random.Random, orders: list[Order], lines: list[OrderLine],
                    carriers: list[Carrier]) -> None:
    shipped = [o for o in orders if o.status == "shipped"]
    shipments = _bulk(Shipment, (
        Shipment(order=o, carrier=(c := rng.choice(carriers)),
                 tracking_number=tracking_number(o.number, c.code),
                 status=rng.choice(("in_transit", "delivered")))
        for o in shipped
    ))
    by_order = {s.order_id: s for s in shipments}
    _bulk(ShipmentLine, (
        ShipmentLine(shipment=by_order[ln.order_id], order_line=ln, quantity=ln.quantity)
        for ln in lines if ln.order_id in by_order
    ))
    _bulk(TrackingEvent, (
        TrackingEvent(shipment=s, status=st, location=loc,
                      happened_at=EPOCH + timedelta(days=s.order_id % 300, hours=h))
        for s in shipments
        for h, (st, loc) in enumerate((("label_created", "warehouse"), (s.status, "hub")))
    ))


def _seed_loyalty(orders: list[Order]) -> None:
    accounts = dict(LoyaltyAccount.objects.values_list("user_id", "id"))
    earned = [o for o in orders if o.status in ("paid", "shipped")]
    _bulk(LoyaltyTransaction, (
        LoyaltyTransaction(account_id=accounts[o.user_id], order=o, points=int(o.total),
                           reason="order paid")
        for o in earned
    ))
    points: dict[int, int] = {}
    for o in earned:
        points[o.user_id] = points.get(o.user_id, 0) + int(o.total)
    rows = list(LoyaltyAccount.objects.filter(user_id__in=points))
    for row in rows:
        row.points = points[row.user_id]
    LoyaltyAccount.objects.bulk_update(rows, ["points"], batch_size=BATCH)


def seed_reviews(rng: random.Random, size: SeedSize, users: list[User],
                 products: list[Product]) -> None:
    """Reviews in every status; moderated ones carry the staff user's decision."""
    staff = users[0]
    reviews = _bulk(Review, (
        Review(product=rng.choice(products), user=rng.choice(users[1:]),
               rating=rng.choice((1, 2, 3, 4, 4, 5, 5, 5)), title=f"Review {i}",
               body="Does what it says.",
               status=_weighted(rng, (("approved", 70), ("pending", 20), ("rejected", 10))))
        for i in range(size.reviews)
    ))
    _bulk(ModerationDecision, (
        ModerationDecision(review=r, moderator=staff,
                           decision={"approved": "approve", "rejected": "reject"}[r.status])
        for r in reviews if r.status != "pending"
    ))


def seed(size: SeedSize, seed_value: int = 42,
         progress: Callable[[str], None] = lambda _: None) -> SeedReport:
    """Empty the shop and fill it with ``size`` worth of deterministic data."""
    rng = random.Random(seed_value)
    timings: dict[str, float] = {}

    def phase(name: str, fn: Callable[[], T]) -> T:
        progress(name)
        start = time.perf_counter()
        result = fn()
        timings[name] = round(time.perf_counter() - start, 3)
        return result

    # Orders and carts are not published: no service follows them yet, and the ordering
    # service is filled by `strangler backfill --context ordering` (one event per seeded
    # order and line would also double the large seed's time).
    with transaction.atomic(), outbox.silenced(outbox.ORDERING):
        phase("clear", clear_shop)
        ref = phase("reference data", lambda: seed_reference(rng, size))
        users, report = phase("users", lambda: seed_users(rng, size, seed_value))
        products = phase("catalog", lambda: seed_catalog(rng, size, ref))
        phase("orders", lambda: seed_orders(rng, size, users, products, ref))
        phase("reviews", lambda: seed_reviews(rng, size, users, products))
    report.timings = timings
    report.counts = {
        "users": len(users), "products": len(products),
        "orders": Order.objects.count(), "order_lines": OrderLine.objects.count(),
        "reviews": Review.objects.count(),
    }
    return report
