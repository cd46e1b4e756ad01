"""The monolith's ordering JSON, field for field (users and addresses as ids)."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from rest_framework import serializers
from rest_framework.validators import UniqueValidator

from extracted.ordering.models import Cart, CartItem, Coupon, Order, OrderLine, Product

CENT = Decimal("0.01")


def money(value: Decimal | int) -> Decimal:
    """Round to cents, half up (the monolith's rule)."""
    return Decimal(value).quantize(CENT, rounding=ROUND_HALF_UP)


class ProductRefSerializer(serializers.ModelSerializer[Product]):
    class Meta:
        model = Product
        fields = ["id", "sku", "name", "price"]


class CartItemSerializer(serializers.ModelSerializer[CartItem]):
    product = ProductRefSerializer(read_only=True)
    line_total = serializers.SerializerMethodField()

    class Meta:
        model = CartItem
        fields = ["id", "product", "quantity", "line_total"]

    def get_line_total(self, obj: CartItem) -> str:
        return str(money(obj.product.price * obj.quantity))


class CartSerializer(serializers.ModelSerializer[Cart]):
    items = CartItemSerializer(many=True, read_only=True)
    total = serializers.SerializerMethodField()

    class Meta:
        model = Cart
        fields = ["id", "items", "total"]

    def get_total(self, obj: Cart) -> str:
        return str(money(sum((i.product.price * i.quantity for i in obj.items.all()), 0)))


class AddCartItemSerializer(serializers.Serializer[Any]):
    product = serializers.PrimaryKeyRelatedField(queryset=Product.objects.filter(is_active=True))
    quantity = serializers.IntegerField(min_value=1, max_value=99, default=1)


class UpdateCartItemSerializer(serializers.Serializer[Any]):
    quantity = serializers.IntegerField(min_value=1, max_value=99)


class PaySerializer(serializers.Serializer[Any]):
    method = serializers.ChoiceField(choices=["card", "paypal", "invoice"], default="card")


class CheckoutSerializer(serializers.Serializer[Any]):
    shipping_address = serializers.IntegerField()
    coupon = serializers.CharField(required=False, allow_blank=True)


class OrderLineSerializer(serializers.ModelSerializer[OrderLine]):
    product = ProductRefSerializer(read_only=True)

    class Meta:
        model = OrderLine
        fields = ["id", "product", "product_name", "unit_price", "quantity"]


class OrderSerializer(serializers.ModelSerializer[Order]):
    user = serializers.IntegerField(source="user_id", read_only=True)
    shipping_address = serializers.IntegerField(source="shipping_address_id", read_only=True,
                                                allow_null=True)
    lines = OrderLineSerializer(many=True, read_only=True)
    coupon: serializers.SlugRelatedField[Coupon] = serializers.SlugRelatedField(
        slug_field="code", read_only=True)

    class Meta:
        model = Order
        fields = [
            "id", "number", "user", "status", "shipping_address", "total", "currency",
            "coupon", "lines", "created_at", "updated_at",
        ]
        read_only_fields = ["number", "status", "total", "currency", "created_at",
                            "updated_at"]


class CouponSerializer(serializers.ModelSerializer[Coupon]):
    code = serializers.CharField(max_length=30, validators=[UniqueValidator(
        queryset=Coupon.objects.all(), message="coupon with this code already exists.")])
    percent_off = serializers.IntegerField(min_value=1, max_value=100)

    class Meta:
        model = Coupon
        fields = ["id", "code", "percent_off", "active"]
