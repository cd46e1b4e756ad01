"""Catalog and inventory endpoints (one app, two domains: the legacy split)."""

from __future__ import annotations

from typing import Any

import django_filters
from django.db.models import Avg, Exists, OuterRef, ProtectedError, QuerySet, Subquery
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action, api_view, permission_classes
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response

from legacy_monolith.common.errors import Conflict
from legacy_monolith.common.models import Tag
from legacy_monolith.common.permissions import IsStaff, IsStaffOrReadOnly

# Tangle: the catalog view reads reviews (for `rating` and /reviews/).
from legacy_monolith.reviews.models import Review
from legacy_monolith.store import actions
from legacy_monolith.store.models import (
    Brand,
    Category,
    Product,
    StockLevel,
    StockMovement,
    Warehouse,
)
from legacy_monolith.store.serializers import (
    BrandSerializer,
    CategorySerializer,
    ProductSerializer,
    ReserveRequestSerializer,
    StockLevelSerializer,
    StockMovementSerializer,
    StockReservationSerializer,
    TagSerializer,
    WarehouseSerializer,
)
from legacy_monolith.utils import audit


def annotated_products() -> QuerySet[Product]:
    """Products with category, brand, tags, ``in_stock_flag`` and ``rating_avg`` in 3 queries."""
    in_stock = StockLevel.objects.filter(product=OuterRef("pk"), quantity__gt=0)
    rating = (
        Review.objects.filter(product=OuterRef("pk"), status=Review.Status.APPROVED)
        .order_by()
        .values("product")
        .annotate(avg=Avg("rating"))
        .values("avg")
    )
    return (
        Product.objects.select_related("category", "brand")
        .prefetch_related("tags")
        .annotate(in_stock_flag=Exists(in_stock), rating_avg=Subquery(rating))
    )


class ProductFilter(django_filters.FilterSet):
    min_price = django_filters.NumberFilter(field_name="price", lookup_expr="gte")
    max_price = django_filters.NumberFilter(field_name="price", lookup_expr="lte")
    category_slug = django_filters.CharFilter(field_name="category__slug")
    brand_slug = django_filters.CharFilter(field_name="brand__slug")
    tag = django_filters.CharFilter(field_name="tags__slug")

    class Meta:
        model = Product
        fields = ["category", "brand", "is_active", "currency"]


class ProductViewSet(viewsets.ModelViewSet):  # type: ignore[type-arg]
    """Products: public reads, staff writes; ``/reviews/`` and ``/stock/`` reach other domains."""

    serializer_class = ProductSerializer
    permission_classes = [IsStaffOrReadOnly]
    filterset_class = ProductFilter
    search_fields = ["name", "sku", "description"]
    ordering_fields = ["id", "name", "price", "created_at"]
    ordering = ["id"]
    lookup_value_converter = "int"

    def get_queryset(self) -> QuerySet[Product]:
        return annotated_products()

    def perform_create(self, serializer: Any) -> None:
        product = serializer.save()
        audit(self.request.user, "product.create", product)

    def perform_update(self, serializer: Any) -> None:
        product = serializer.save()
        audit(self.request.user, "product.update", product)

    def perform_destroy(self, instance: Product) -> None:
        try:
            instance.delete()
        except ProtectedError as exc:
            raise Conflict(
                f"Product {instance.sku} is on orders and cannot be deleted; "
                "set is_active to false instead."
            ) from exc

    @action(detail=True, methods=["get"], permission_classes=[AllowAny])
    def reviews(self, request: Request, pk: int | None = None) -> Response:
        """Approved reviews of the product, newest first."""
        from legacy_monolith.reviews.serializers import ReviewSerializer

        product = self.get_object()
        queryset = Review.objects.filter(
            product=product, status=Review.Status.APPROVED
        ).select_related("user")
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(ReviewSerializer(page, many=True).data)

    @action(detail=True, methods=["get"], permission_classes=[AllowAny])
    def stock(self, request: Request, pk: int | None = None) -> Response:
        """Units per warehouse (the catalog answering an inventory question)."""
        product = self.get_object()
        levels = StockLevel.objects.filter(product=product).select_related("warehouse")
        rows = [{"warehouse": lv.warehouse.code, "quantity": lv.quantity} for lv in levels]
        total = sum(max(row["quantity"], 0) for row in rows)
        return Response(
            {"product": product.pk, "in_stock": total > 0, "total": total, "warehouses": rows}
        )


class CategoryViewSet(viewsets.ModelViewSet):  # type: ignore[type-arg]
    queryset = Category.objects.all()
    serializer_class = CategorySerializer
    permission_classes = [IsStaffOrReadOnly]
    filterset_fields = ["parent"]
    search_fields = ["name", "slug"]
    ordering_fields = ["id", "name"]
    lookup_value_converter = "int"

    def perform_destroy(self, instance: Category) -> None:
        try:
            instance.delete()
        except ProtectedError as exc:
            raise Conflict(f"Category {instance.slug} still has products.") from exc


class BrandViewSet(viewsets.ModelViewSet):  # type: ignore[type-arg]
    queryset = Brand.objects.all()
    serializer_class = BrandSerializer
    permission_classes = [IsStaffOrReadOnly]
    filterset_fields = ["country"]
    search_fields = ["name", "slug"]
    ordering_fields = ["id", "name"]
    lookup_value_converter = "int"

    def perform_destroy(self, instance: Brand) -> None:
        try:
            instance.delete()
        except ProtectedError as exc:
            raise Conflict(f"Brand {instance.slug} still has products.") from exc


class TagViewSet(viewsets.ReadOnlyModelViewSet):  # type: ignore[type-arg]
    queryset = Tag.objects.all()
    serializer_class = TagSerializer
    permission_classes = [AllowAny]
    search_fields = ["name", "slug"]
    lookup_value_converter = "int"


class WarehouseViewSet(viewsets.ModelViewSet):  # type: ignore[type-arg]
    queryset = Warehouse.objects.all()
    serializer_class = WarehouseSerializer
    permission_classes = [IsStaff]
    search_fields = ["code", "name", "city"]
    ordering_fields = ["id", "code"]
    lookup_value_converter = "int"


class StockLevelViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,  # type: ignore[type-arg]
):
    queryset = StockLevel.objects.select_related("product", "warehouse")
    serializer_class = StockLevelSerializer
    permission_classes = [IsStaff]
    filterset_fields = ["product", "warehouse"]
    ordering_fields = ["id", "quantity"]
    ordering = ["id"]
    lookup_value_converter = "int"

    def perform_update(self, serializer: Any) -> None:
        before = serializer.instance.quantity
        level = serializer.save()
        if level.quantity != before:
            StockMovement.objects.create(
                stock_level=level, delta=level.quantity - before, reason="adjustment"
            )


class StockMovementViewSet(viewsets.ReadOnlyModelViewSet):  # type: ignore[type-arg]
    queryset = StockMovement.objects.all()
    serializer_class = StockMovementSerializer
    permission_classes = [IsStaff]
    filterset_fields = ["stock_level", "reason"]
    lookup_value_converter = "int"


@extend_schema(
    request=ReserveRequestSerializer, responses={201: StockReservationSerializer(many=True)}
)
@api_view(["POST"])
@permission_classes([IsStaff])
def reserve_stock(request: Request) -> Response:
    """Legacy endpoint: reserve units of a product outside any order (staff only)."""
    payload = ReserveRequestSerializer(data=request.data)
    payload.is_valid(raise_exception=True)
    reservations = actions.reserve_stock(
        payload.validated_data["product"], payload.validated_data["quantity"], reason="manual"
    )
    data = StockReservationSerializer(reservations, many=True).data
    return Response({"reservations": data}, status=status.HTTP_201_CREATED)
