"""Inventory endpoints: warehouses, stock levels, movements, manual reservations (staff)."""

from __future__ import annotations

from typing import Any

from rest_framework.test import APIClient

from legacy_monolith.store.models import StockLevel, StockMovement, StockReservation


def test_inventory_is_staff_only(anon: APIClient, alice_client: APIClient, shop: Any) -> None:
    for url in ("/api/warehouses/", "/api/stock-levels/", "/api/stock-movements/"):
        assert anon.get(url).status_code == 401
        assert alice_client.get(url).status_code == 403
    assert alice_client.post("/api/stock/reserve/", {}).status_code == 403


def test_warehouse_crud(staff_client: APIClient, shop: Any) -> None:
    created = staff_client.post("/api/warehouses/", {"code": "MAD", "name": "Madrid DC",
                                                     "city": "Madrid"})
    assert created.status_code == 201
    url = f"/api/warehouses/{created.json()['id']}/"
    assert staff_client.patch(url, {"city": "Getafe"}).json()["city"] == "Getafe"
    assert staff_client.post("/api/warehouses/", {"code": "MAD"}).json().keys() >= {
        "code", "name", "city"}
    assert staff_client.delete(url).status_code == 204
    assert staff_client.get(url).status_code == 404


def test_list_query_counts_are_pinned(staff_client: APIClient, shop: Any,
                                      django_assert_num_queries: Any) -> None:
    with django_assert_num_queries(2):
        assert staff_client.get("/api/warehouses/").status_code == 200
    with django_assert_num_queries(2):  # select_related product + warehouse
        body = staff_client.get("/api/stock-levels/").json()
    assert body["count"] == 4
    assert body["results"][0]["warehouse_code"] == "AMS"


def test_stock_level_update_records_a_movement(staff_client: APIClient, shop: Any) -> None:
    level = StockLevel.objects.get(product=shop.products[2])
    response = staff_client.patch(f"/api/stock-levels/{level.pk}/", {"quantity": 7})
    assert response.status_code == 200
    movement = StockMovement.objects.get(stock_level=level)
    assert (movement.delta, movement.reason) == (7, "adjustment")
    listed = staff_client.get(f"/api/stock-movements/?stock_level={level.pk}").json()
    assert listed["count"] == 1
    bad = staff_client.patch(f"/api/stock-levels/{level.pk}/", {"quantity": -1})
    assert bad.status_code == 400
    assert "quantity" in bad.json()


def test_stock_levels_filter_by_product(staff_client: APIClient, shop: Any) -> None:
    body = staff_client.get(f"/api/stock-levels/?product={shop.products[0].pk}").json()
    assert [r["quantity"] for r in body["results"]] == [5, 3]


def test_reserve_takes_from_the_fullest_warehouse_first(staff_client: APIClient,
                                                       shop: Any) -> None:
    response = staff_client.post("/api/stock/reserve/",
                                 {"product": shop.products[0].pk, "quantity": 6})
    assert response.status_code == 201, response.content
    assert [r["quantity"] for r in response.json()["reservations"]] == [5, 1]
    assert sorted(StockLevel.objects.filter(product=shop.products[0])
                  .values_list("quantity", flat=True)) == [0, 2]
    assert StockReservation.objects.count() == 2


def test_reserve_more_than_on_hand_is_a_conflict_and_changes_nothing(
        staff_client: APIClient, shop: Any) -> None:
    response = staff_client.post("/api/stock/reserve/",
                                 {"product": shop.products[0].pk, "quantity": 9})
    assert response.status_code == 409
    assert "SKU-1" in response.json()["detail"]
    assert StockReservation.objects.count() == 0
    assert sum(StockLevel.objects.filter(product=shop.products[0])
               .values_list("quantity", flat=True)) == 8


def test_reserve_validates_fields(staff_client: APIClient, shop: Any) -> None:
    response = staff_client.post("/api/stock/reserve/", {"product": 999, "quantity": 0})
    assert response.status_code == 400
    assert set(response.json()) == {"product", "quantity"}
