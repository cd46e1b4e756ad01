"""URLs of the catalog service: the monolith's catalog paths, health, internal sync."""

from __future__ import annotations

from django.urls import include, path
from rest_framework.routers import SimpleRouter

from extracted.catalog import health, internal, views

router = SimpleRouter(use_regex_path=False)
router.register("products", views.ProductViewSet, basename="product")
router.register("categories", views.CategoryViewSet, basename="category")
router.register("brands", views.BrandViewSet, basename="brand")
router.register("tags", views.TagViewSet, basename="tag")

urlpatterns = [
    path("api/", include(router.urls)),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("internal/events/", internal.EventsView.as_view(), name="internal-events"),
    path("internal/snapshot/", internal.SnapshotView.as_view(), name="internal-snapshot"),
    path("internal/checksums/", internal.ChecksumsView.as_view(), name="internal-checksums"),
    path("internal/rows/", internal.RowsView.as_view(), name="internal-rows"),
    path("internal/versions/", internal.VersionsView.as_view(), name="internal-versions"),
    path("internal/dead-letters/", internal.DeadLettersView.as_view(),
         name="internal-dead-letters"),
    path("internal/ownership/", internal.OwnershipView.as_view(), name="internal-ownership"),
]
