"""The catalog JSON shapes: the monolith's contract (docs/monolith.md), field for field.

One deliberate difference is left in for the walkthrough reader to find in shadow mode and
fix: see docs/extracted-catalog.md, "The deliberate discrepancy".
"""

from __future__ import annotations

from typing import Any

from rest_framework import serializers
from rest_framework.validators import UniqueValidator

from extracted.catalog.models import Brand, Category, PriceHistory, Product, Tag


def _unique(model: type[Any], field: str) -> dict[str, Any]:
    """The validator Django would derive from ``unique=True`` in the monolith's model.

    The service's tables don't enforce the uniqueness (rows arrive batch by batch from the
    monolith, see models.py), so the API checks it with the monolith's exact message.
    """
    message = f"{model._meta.verbose_name} with this {field} already exists."
    return {"validators": [UniqueValidator(queryset=model.objects.all(), message=message)]}


class CategorySerializer(serializers.ModelSerializer[Category]):
    """``{"id", "name", "slug", "parent"}``; ``parent`` is an id or null."""

    class Meta:
        model = Category
        fields = ["id", "name", "slug", "parent"]
        extra_kwargs = {"slug": _unique(Category, "slug")}


class BrandSerializer(serializers.ModelSerializer[Brand]):
    """``{"id", "name", "slug", "country"}``."""

    class Meta:
        model = Brand
        fields = ["id", "name", "slug", "country"]
        extra_kwargs = {"slug": _unique(Brand, "slug")}


class TagSerializer(serializers.ModelSerializer[Tag]):
    """``{"id", "name", "slug"}``."""

    class Meta:
        model = Tag
        fields = ["id", "name", "slug"]


class NestedRefField(serializers.PrimaryKeyRelatedField):  # type: ignore[type-arg]
    """Written as an id, read as ``{"id", "name", "slug"}``."""

    def use_pk_only_optimization(self) -> bool:
        return False

    def to_representation(self, value: Any) -> dict[str, Any]:
        return {"id": value.pk, "name": value.name, "slug": value.slug}


class ProductSerializer(serializers.ModelSerializer[Product]):
    """The product shape; ``in_stock`` and ``rating`` come from the signals read model."""

    category = NestedRefField(queryset=Category.objects.all())
    brand = NestedRefField(queryset=Brand.objects.all())
    # THE DELIBERATE DISCREPANCY (docs/extracted-catalog.md): the monolith sends the price
    # as a string ("19.99"); this sends a JSON number. The fix is to delete this line.
    price = serializers.DecimalField(max_digits=10, decimal_places=2, coerce_to_string=False)
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
        extra_kwargs = {"sku": _unique(Product, "sku"), "slug": _unique(Product, "slug")}

    def validate_price(self, value: Any) -> Any:
        """Prices are positive, as in the monolith."""
        if value <= 0:
            raise serializers.ValidationError("Ensure this value is greater than 0.")
        return value

    def get_in_stock(self, obj: Product) -> bool:
        """From the ``in_stock_flag`` annotation, else the signals row (False when none)."""
        if hasattr(obj, "in_stock_flag"):
            return bool(obj.in_stock_flag)
        from extracted.catalog.models import ProductSignals

        signals = ProductSignals.objects.filter(product_id=obj.pk).first()
        return bool(signals and signals.in_stock)

    def get_rating(self, obj: Product) -> float | None:
        """Average approved rating, two decimals, or null without approved reviews."""
        if hasattr(obj, "rating_avg"):
            value = obj.rating_avg
        else:
            from extracted.catalog.models import ProductSignals

            signals = ProductSignals.objects.filter(product_id=obj.pk).first()
            value = signals.rating if signals else None
        return None if value is None else round(float(value), 2)

    def create(self, validated_data: dict[str, Any]) -> Product:
        from extracted.catalog import actions

        return actions.create_product(validated_data)

    def update(self, instance: Product, validated_data: dict[str, Any]) -> Product:
        from extracted.catalog import actions

        return actions.update_product(instance, validated_data)


class PriceHistorySerializer(serializers.ModelSerializer[PriceHistory]):
    """``{"id", "amount", "currency", "valid_from"}``."""

    class Meta:
        model = PriceHistory
        fields = ["id", "amount", "currency", "valid_from"]
