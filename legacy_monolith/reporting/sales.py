"""Sales report: one raw SQL statement joining ordering, catalog, inventory, shipping,
reviews and customers tables. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db import connection

from legacy_monolith.utils import money

# group_by -> (key expression, label expression). A whitelist: the value never reaches SQL.
DIMENSIONS: dict[str, str] = {
    "category": "c.slug",
    "brand": "b.slug",
    "warehouse": "w.code",
    "carrier": "ca.code",
    "tier": "u.loyalty_tier",
}

SALES_SQL = """
SELECT {key} AS dim,
       COUNT(DISTINCT o.id) AS orders,
       SUM(ol.quantity) AS units,
       SUM(ol.unit_price * ol.quantity) AS revenue,
       AVG(rv.avg_rating) AS avg_rating
FROM orders_orderline ol
JOIN orders_order o ON o.id = ol.order_id
JOIN accounts_user u ON u.id = o.user_id
JOIN store_product p ON p.id = ol.product_id
JOIN store_category c ON c.id = p.category_id
JOIN store_brand b ON b.id = p.brand_id
LEFT JOIN (
    SELECT r.order_line_id, MIN(sl.warehouse_id) AS warehouse_id
    FROM store_stockreservation r
    JOIN store_stocklevel sl ON sl.id = r.stock_level_id
    GROUP BY r.order_line_id
) res ON res.order_line_id = ol.id
LEFT JOIN store_warehouse w ON w.id = res.warehouse_id
LEFT JOIN (
    SELECT order_id, MIN(carrier_id) AS carrier_id FROM orders_shipment GROUP BY order_id
) sh ON sh.order_id = o.id
LEFT JOIN orders_carrier ca ON ca.id = sh.carrier_id
LEFT JOIN (
    SELECT product_id, AVG(rating) AS avg_rating
    FROM reviews_review WHERE status = 'approved' GROUP BY product_id
) rv ON rv.product_id = p.id
WHERE o.status IN ('paid', 'shipped')
GROUP BY {key}
ORDER BY revenue DESC, dim
"""


class UnknownDimension(ValueError):
    """The ``group_by`` value is not one of DIMENSIONS."""


def sales_report(group_by: str = "category", limit: int = 50) -> list[dict[str, Any]]:
    """Orders, units, revenue and average approved rating per ``group_by`` value."""
    key = DIMENSIONS.get(group_by)
    if key is None:
        raise UnknownDimension(group_by)
    with connection.cursor() as cursor:
        cursor.execute(SALES_SQL.format(key=key) + " LIMIT %s", [limit])
        rows = cursor.fetchall()
    return [_row(*row) for row in rows]


def _row(key: Any, orders: int, units: Any, revenue: Any, avg_rating: Any) -> dict[str, Any]:
    return {
        "key": key,
        "orders": int(orders),
        "units": int(units or 0),
        "revenue": str(money(Decimal(str(revenue or 0)))),
        "avg_rating": None if avg_rating is None else round(float(avg_rating), 2),
    }
