"""The catalog API: products, categories, brands and tags, as the monolith serves them.

Paths, filters, search, ordering, pagination, permissions, status codes and error bodies
follow ``legacy_monolith/store/views.py``. The product's ``/reviews/`` and ``/stock/``
sub-resources belong to other contexts and stay routed to the monolith (see
docs/extracted-catalog.md).
"""

from __future__ import annotations

from typing import Any

import django_filters
from django.db import transaction
from django.db.models import OuterRef, QuerySet, Subquery
from rest_framework import viewsets
from rest_framework.exceptions import APIException
from rest_framework.permissions import AllowAny

from extracted.catalog import actions
from extracted.catalog.models import Brand, Category, Product, ProductSignals, Tag
from extracted.catalog.serializers import (
    BrandSerializer,
    CategorySerializer,
    ProductSerializer,
    TagSerializer,
)
from extracted.servicekit.permissions import IsStaffOrReadOnly


class Conflict(APIException):
    """The resource is not in a state that allows the action (HTTP 409), as in the monolith."""

    status_code = 409
    default_detail = "The resource is not in a state that allows this action."
    default_code = "conflict"


def annotated_products() -> QuerySet[Product]:
    """Products with category, brand, tags and the two signals, in 3 queries per page."""
    signals = ProductSignals.objects.filter(product_id=OuterRef("pk"))
    return (
        Product.objects.select_related("category", "brand")
        .prefetch_related("tags")
        .annotate(
            in_stock_flag=Subquery(signals.values("in_stock")[:1]),
            rating_avg=Subquery(signals.values("rating")[:1]),
        )
    )


class ProductFilter(django_filters.FilterSet):
    """The monolith's product filters."""

    min_price = django_filters.NumberFilter(field_name="price", lookup_expr="gte")
    max_price = django_filters.NumberFilter(field_name="price", lookup_expr="lte")
    category_slug = django_filters.CharFilter(field_name="category__slug")
    brand_slug = django_filters.CharFilter(field_name="brand__slug")
    tag = django_filters.CharFilter(field_name="tags__slug")

    class Meta:
        model = Product
        fields = ["category", "brand", "is_active", "currency"]


class ProductViewSet(viewsets.ModelViewSet):  # type: ignore[type-arg]
    """Products: public reads, staff writes."""

    serializer_class = ProductSerializer
    permission_classes = [IsStaffOrReadOnly]
    filterset_class = ProductFilter
    search_fields = ["name", "sku", "description"]
    ordering_fields = ["id", "name", "price", "created_at"]
    ordering = ["id"]
    lookup_value_converter = "int"

    def get_queryset(self) -> QuerySet[Product]:
        return annotated_products()

    def perform_destroy(self, instance: Product) -> None:
        actions.delete_product(instance)


class _StaffEditedViewSet(viewsets.ModelViewSet):  # type: ignore[type-arg]
    """Public reads, staff writes; each change and its outbox event in one transaction."""

    permission_classes = [IsStaffOrReadOnly]
    search_fields = ["name", "slug"]
    ordering_fields = ["id", "name"]
    lookup_value_converter = "int"

    def perform_create(self, serializer: Any) -> None:
        with transaction.atomic():  # the row and its event commit together, or neither
            actions.save_simple(serializer.save(), created=True)

    def perform_update(self, serializer: Any) -> None:
        with transaction.atomic():
            actions.save_simple(serializer.save(), created=False)

    def perform_destroy(self, instance: Any) -> None:
        try:
            self.delete_instance(instance)
        except actions.CatalogConflict as exc:
            raise Conflict(str(exc)) from exc

    def delete_instance(self, instance: Any) -> None:
        """The action that deletes one instance (raises CatalogConflict when refused)."""
        raise NotImplementedError


class CategoryViewSet(_StaffEditedViewSet):
    """Categories; deleting one with products is a 409."""

    queryset = Category.objects.all()
    serializer_class = CategorySerializer
    filterset_fields = ["parent"]

    def delete_instance(self, instance: Category) -> None:
        """Children lose their parent (see actions.delete_category)."""
        actions.delete_category(instance)


class BrandViewSet(_StaffEditedViewSet):
    """Brands; deleting one with products is a 409."""

    queryset = Brand.objects.all()
    serializer_class = BrandSerializer
    filterset_fields = ["country"]

    def delete_instance(self, instance: Brand) -> None:
        """Refused while the brand has products."""
        actions.delete_brand(instance)


class TagViewSet(viewsets.ReadOnlyModelViewSet):  # type: ignore[type-arg]
    """Tags, read-only (the monolith edits them through the shared kernel)."""

    queryset = Tag.objects.all()
    serializer_class = TagSerializer
    permission_classes = [AllowAny]
    search_fields = ["name", "slug"]
    lookup_value_converter = "int"
