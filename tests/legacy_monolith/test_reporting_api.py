"""The raw-SQL sales report (staff only), across six domains' tables."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from legacy_monolith.orders.models import Order
from legacy_monolith.reporting.sales import SALES_SQL
from legacy_monolith.reviews.models import Review


def test_sales_report_is_staff_only(anon: APIClient, alice_client: APIClient,
                                    shop: Any) -> None:
    assert anon.get("/api/reports/sales/").status_code == 401
    assert alice_client.get("/api/reports/sales/").status_code == 403


@pytest.mark.parametrize(("group_by", "key"), [
    ("category", "home"), ("brand", "acme"), ("warehouse", "AMS"), ("carrier", "dhl"),
    ("tier", "bronze"),
])
def test_sales_report_groups(staff_client: APIClient, paid_order: Order, group_by: str,
                             key: str) -> None:
    staff_client.post(f"/api/orders/{paid_order.pk}/ship/", {"carrier": "dhl"})
    body = staff_client.get(f"/api/reports/sales/?group_by={group_by}").json()
    assert body["group_by"] == group_by
    assert body["rows"] == [{"key": key, "orders": 1, "units": 2, "revenue": "39.98",
                             "avg_rating": 4.5}]


def test_sales_report_ignores_pending_orders_and_unapproved_reviews(
        staff_client: APIClient, shop: Any) -> None:
    Review.objects.update(status="pending")
    assert staff_client.get("/api/reports/sales/").json()["rows"] == []


def test_sales_report_rejects_unknown_dimension(staff_client: APIClient, shop: Any) -> None:
    response = staff_client.get("/api/reports/sales/?group_by=1;drop")
    assert response.status_code == 400
    assert "group_by" in response.json()


def test_sales_sql_joins_at_least_five_domains() -> None:
    tables = {"orders_order", "store_product", "store_warehouse", "orders_carrier",
              "reviews_review", "accounts_user"}
    assert all(t in SALES_SQL for t in tables)
