"""Catalog endpoints: products, categories, brands, tags (public reads, staff writes)."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from legacy_monolith.common.models import AuditLogEntry
from legacy_monolith.store.models import Brand, Category, Product

PRODUCT_KEYS = {"id", "sku", "name", "slug", "description", "category", "brand", "price",
                "currency", "is_active", "tags", "in_stock", "rating", "created_at",
                "updated_at"}


def test_product_list_has_the_documented_shape(anon: APIClient, shop: Any) -> None:
    response = anon.get("/api/products/")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"count", "next", "previous", "results"}
    assert body["count"] == 3
    first = body["results"][0]
    assert set(first) == PRODUCT_KEYS
    assert first["category"] == {"id": shop.category.pk, "name": "Home", "slug": "home"}
    assert first["brand"] == {"id": shop.brand.pk, "name": "Acme", "slug": "acme"}
    assert first["price"] == "19.99"
    assert first["currency"] == "EUR"
    assert first["tags"] == ["new", "sale"]
    assert first["in_stock"] is True
    assert first["rating"] == 4.5  # the pending review does not count
    assert first["created_at"].endswith("Z")


def test_product_in_stock_and_rating_for_unreviewed_empty_product(anon: APIClient,
                                                                  shop: Any) -> None:
    body = anon.get(f"/api/products/{shop.products[2].pk}/").json()
    assert body["in_stock"] is False
    assert body["rating"] is None


def test_product_list_query_count_is_pinned(anon: APIClient, shop: Any,
                                            django_assert_num_queries: Any) -> None:
    # count + page (with Exists/Subquery annotations) + tags prefetch
    with django_assert_num_queries(3):
        assert anon.get("/api/products/").status_code == 200


def test_product_detail_query_count_is_pinned(anon: APIClient, shop: Any,
                                              django_assert_num_queries: Any) -> None:
    with django_assert_num_queries(2):
        assert anon.get(f"/api/products/{shop.products[0].pk}/").status_code == 200


def test_product_list_paginates_filters_searches_and_orders(anon: APIClient,
                                                            shop: Any) -> None:
    page = anon.get("/api/products/?page_size=2").json()
    assert len(page["results"]) == 2
    assert page["next"].endswith("page=2&page_size=2")
    assert anon.get("/api/products/?page_size=500").json()["count"] == 3
    assert anon.get("/api/products/?search=Thing 2").json()["count"] == 1
    assert anon.get("/api/products/?min_price=25").json()["count"] == 2
    assert anon.get("/api/products/?tag=sale").json()["count"] == 1
    ordered = anon.get("/api/products/?ordering=-price").json()["results"]
    assert [p["sku"] for p in ordered] == ["SKU-3", "SKU-2", "SKU-1"]


def test_product_list_page_out_of_range_is_404(anon: APIClient, shop: Any) -> None:
    response = anon.get("/api/products/?page=99")
    assert response.status_code == 404
    assert "detail" in response.json()


def test_unknown_product_is_404(anon: APIClient, shop: Any) -> None:
    assert anon.get("/api/products/999999/").status_code == 404


def test_anonymous_cannot_create_a_product(anon: APIClient, shop: Any) -> None:
    response = anon.post("/api/products/", {"sku": "X"})
    assert response.status_code == 401


def test_shopper_cannot_create_a_product(alice_client: APIClient, shop: Any) -> None:
    assert alice_client.post("/api/products/", {"sku": "X"}).status_code == 403


def _new_product(shop: Any, **overrides: Any) -> dict[str, Any]:
    data = {"sku": "SKU-NEW", "name": "New thing", "slug": "new-thing",
            "category": shop.category.pk, "brand": shop.brand.pk, "price": "12.50",
            "tags": ["sale"]}
    data.update(overrides)
    return data


def test_staff_creates_updates_and_deletes_a_product(staff_client: APIClient,
                                                     shop: Any) -> None:
    created = staff_client.post("/api/products/", _new_product(shop))
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["tags"] == ["sale"]
    assert body["in_stock"] is False
    assert body["rating"] is None
    assert body["category"]["slug"] == "home"
    pid = body["id"]
    patched = staff_client.patch(f"/api/products/{pid}/", {"price": "13.00"})
    assert patched.status_code == 200
    assert patched.json()["price"] == "13.00"
    put = staff_client.put(f"/api/products/{pid}/", _new_product(shop, name="Renamed"))
    assert put.status_code == 200
    assert put.json()["name"] == "Renamed"
    assert AuditLogEntry.objects.filter(action__startswith="product.").count() == 3
    assert staff_client.delete(f"/api/products/{pid}/").status_code == 204
    assert not Product.objects.filter(pk=pid).exists()


def test_product_create_validation_errors_name_the_fields(staff_client: APIClient,
                                                          shop: Any) -> None:
    response = staff_client.post("/api/products/", _new_product(
        shop, sku="SKU-1", price="-1", category=999, currency="euro", tags=["nope"]))
    assert response.status_code == 400
    errors = response.json()
    assert set(errors) >= {"sku", "price", "category", "currency", "tags"}
    assert "product with this sku already exists." in errors["sku"]


def test_deleting_an_ordered_product_is_a_conflict(staff_client: APIClient, shop: Any,
                                                   paid_order: Any) -> None:
    response = staff_client.delete(f"/api/products/{shop.products[0].pk}/")
    assert response.status_code == 409
    assert "is_active" in response.json()["detail"]


def test_product_reviews_lists_only_approved(anon: APIClient, shop: Any) -> None:
    body = anon.get(f"/api/products/{shop.products[0].pk}/reviews/").json()
    assert body["count"] == 2
    assert {r["title"] for r in body["results"]} == {"Good", "Great"}


def test_product_stock_sums_warehouses(anon: APIClient, shop: Any) -> None:
    body = anon.get(f"/api/products/{shop.products[0].pk}/stock/").json()
    assert body == {"product": shop.products[0].pk, "in_stock": True, "total": 8,
                    "warehouses": [{"warehouse": "AMS", "quantity": 5},
                                   {"warehouse": "BER", "quantity": 3}]}
    assert anon.get("/api/products/424242/stock/").status_code == 404


@pytest.mark.parametrize(("url", "model", "payload"), [
    ("/api/categories/", Category, {"name": "Garden", "slug": "garden"}),
    ("/api/brands/", Brand, {"name": "Zenith", "slug": "zenith", "country": "FR"}),
])
def test_category_and_brand_crud(staff_client: APIClient, anon: APIClient, shop: Any,
                                 url: str, model: type, payload: dict[str, Any]) -> None:
    assert anon.post(url, payload).status_code == 401
    created = staff_client.post(url, payload)
    assert created.status_code == 201, created.content
    item = f"{url}{created.json()['id']}/"
    assert anon.get(item).json()["slug"] == payload["slug"]
    assert staff_client.patch(item, {"name": "Renamed"}).json()["name"] == "Renamed"
    duplicate = staff_client.post(url, payload)
    assert duplicate.status_code == 400
    assert "slug" in duplicate.json()
    assert staff_client.delete(item).status_code == 204
    assert anon.get(item).status_code == 404
    assert model.objects.filter(slug=payload["slug"]).count() == 0


def test_category_with_products_cannot_be_deleted(staff_client: APIClient, shop: Any) -> None:
    assert staff_client.delete(f"/api/categories/{shop.category.pk}/").status_code == 409
    assert staff_client.delete(f"/api/brands/{shop.brand.pk}/").status_code == 409


@pytest.mark.parametrize(("url", "queries"), [
    ("/api/categories/", 2), ("/api/brands/", 2), ("/api/tags/", 2),
])
def test_catalog_list_query_counts_are_pinned(anon: APIClient, shop: Any, url: str,
                                              queries: int,
                                              django_assert_num_queries: Any) -> None:
    with django_assert_num_queries(queries):
        response = anon.get(url)
    assert response.status_code == 200
    assert response.json()["count"] >= 1


def test_tags_are_public_and_searchable(anon: APIClient, shop: Any) -> None:
    body = anon.get("/api/tags/?search=sal").json()
    assert [t["slug"] for t in body["results"]] == ["sale"]
    assert anon.get(f"/api/tags/{shop.tags[0].pk}/").json()["name"] == "Sale"
