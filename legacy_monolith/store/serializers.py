"""Catalog and inventory serializers. The product shape is a contract: docs/monolith.md."""

from __future__ import annotations

from typing import Any

from django.db.models import Avg
from rest_framework import serializers

from legacy_monolith.common.models import Tag
from legacy_monolith.store.models import (
    Brand,
    Category,
    PriceHistory,
    Product,
    StockLevel,
    StockMovement,
    StockReservation,
    Warehouse,
)


class CategorySerializer(serializers.ModelSerializer[Category]):
    class Meta:
        model = Category
        fields = ["id", "name", "slug", "parent"]


class BrandSerializer(serializers.ModelSerializer[Brand]):
    class Meta:
        model = Brand
        fields = ["id", "name", "slug", "country"]


class TagSerializer(serializers.ModelSerializer[Tag]):
    class Meta:
        model = Tag
        fields = ["id", "name", "slug"]


class _NestedRefField(serializers.PrimaryKeyRelatedField):  # type: ignore[type-arg]
    """Written as an id, read as ``{"id", "name", "slug"}``."""

    def use_pk_only_optimization(self) -> bool:
        return False

    def to_representation(self, value: Any) -> dict[str, Any]:
        return {"id": value.pk, "name": value.name, "slug": value.slug}


def rating_of(product: Product) -> float | None:
    """Average approved rating, two decimals; from the queryset annotation when present."""
    if hasattr(product, "rating_avg"):
        value = product.rating_avg
    else:
        # Tangle: the catalog reaches into reviews.
        from legacy_monolith.reviews.models import Review

        value = Review.objects.filter(product=product, status="approved").aggregate(
            avg=Avg("rating")
        )["avg"]
    return None if value is None else round(float(value), 2)


def in_stock_of(product: Product) -> bool:
    """True when any warehouse holds the product; from the annotation when present."""
    if hasattr(product, "in_stock_flag"):
        return bool(product.in_stock_flag)
    return StockLevel.objects.filter(product=product, quantity__gt=0).exists()


class ProductSerializer(serializers.ModelSerializer[Product]):
    category = _NestedRefField(queryset=Category.objects.all())
    brand = _NestedRefField(queryset=Brand.objects.all())
    tags = serializers.SlugRelatedField(
        many=True, slug_field="slug", queryset=Tag.objects.all(), required=False
    )
    in_stock = serializers.SerializerMethodField()
    rating = serializers.SerializerMethodField()
    currency = serializers.RegexField(r"^[A-Z]{3}$", required=False)

    class Meta:
        model = Product
        fields = [
            "id", "sku", "name", "slug", "description", "category", "brand", "price",
            "currency", "is_active", "tags", "in_stock", "rating", "created_at", "updated_at",
        ]
        read_only_fields = ["created_at", "updated_at"]

    def validate_price(self, value: Any) -> Any:
        if value <= 0:
            raise serializers.ValidationError("Ensure this value is greater than 0.")
        return value

    def get_in_stock(self, obj: Product) -> bool:
        return in_stock_of(obj)

    def get_rating(self, obj: Product) -> float | None:
        return rating_of(obj)


class WarehouseSerializer(serializers.ModelSerializer[Warehouse]):
    class Meta:
        model = Warehouse
        fields = ["id", "code", "name", "city"]


class StockLevelSerializer(serializers.ModelSerializer[StockLevel]):
    warehouse_code = serializers.CharField(source="warehouse.code", read_only=True)
    sku = serializers.CharField(source="product.sku", read_only=True)

    class Meta:
        model = StockLevel
        fields = ["id", "product", "sku", "warehouse", "warehouse_code", "quantity"]

    def validate_quantity(self, value: int) -> int:
        if value < 0:
            raise serializers.ValidationError("Ensure this value is greater than or equal to 0.")
        return value


class StockMovementSerializer(serializers.ModelSerializer[StockMovement]):
    class Meta:
        model = StockMovement
        fields = ["id", "stock_level", "delta", "reason", "created_at"]


class StockReservationSerializer(serializers.ModelSerializer[StockReservation]):
    class Meta:
        model = StockReservation
        fields = ["id", "stock_level", "order_line", "quantity", "released", "created_at"]


class ReserveRequestSerializer(serializers.Serializer[Any]):
    product = serializers.PrimaryKeyRelatedField(queryset=Product.objects.all())
    quantity = serializers.IntegerField(min_value=1, max_value=1000)


class PriceHistorySerializer(serializers.ModelSerializer[PriceHistory]):
    class Meta:
        model = PriceHistory
        fields = ["id", "amount", "currency", "valid_from"]
