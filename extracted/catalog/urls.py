"""URLs of the catalog service: the monolith's catalog paths, health, internal sync."""

from __future__ import annotations

from django.urls import include, path
from rest_framework.routers import SimpleRouter

from extracted.catalog import views
from extracted.servicekit.urls import service_urls

router = SimpleRouter(use_regex_path=False)
router.register("products", views.ProductViewSet, basename="product")
router.register("categories", views.CategoryViewSet, basename="category")
router.register("brands", views.BrandViewSet, basename="brand")
router.register("tags", views.TagViewSet, basename="tag")

urlpatterns = [
    path("api/", include(router.urls)),
    *service_urls(),
]
