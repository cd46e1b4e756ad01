"""Ordering, payments and shipping serializers (one app, three domains)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from rest_framework import serializers

from legacy_monolith.orders.models import (
    Carrier,
    Cart,
    CartItem,
    Coupon,
    Order,
    OrderLine,
    PaymentIntent,
    Refund,
    Shipment,
    TrackingEvent,
)
from legacy_monolith.store.models import Product
from legacy_monolith.utils import money


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


class CheckoutSerializer(serializers.Serializer[Any]):
    shipping_address = serializers.IntegerField()
    coupon = serializers.CharField(required=False, allow_blank=True)


class OrderLineSerializer(serializers.ModelSerializer[OrderLine]):
    # The N+1 on purpose: one product query per line (pinned in the tests).
    product = ProductRefSerializer(read_only=True)

    class Meta:
        model = OrderLine
        fields = ["id", "product", "product_name", "unit_price", "quantity"]


class OrderSerializer(serializers.ModelSerializer[Order]):
    lines = OrderLineSerializer(many=True, read_only=True)
    coupon: serializers.SlugRelatedField[Coupon] = serializers.SlugRelatedField(
        slug_field="code", read_only=True)

    class Meta:
        model = Order
        fields = [
            "id", "number", "user", "status", "shipping_address", "total", "currency",
            "coupon", "lines", "created_at", "updated_at",
        ]


class PaySerializer(serializers.Serializer[Any]):
    method = serializers.ChoiceField(choices=["card", "paypal", "invoice"], default="card")


class ShipSerializer(serializers.Serializer[Any]):
    carrier = serializers.SlugRelatedField(slug_field="code", queryset=Carrier.objects.all())


class CouponSerializer(serializers.ModelSerializer[Coupon]):
    percent_off = serializers.IntegerField(min_value=1, max_value=100)

    class Meta:
        model = Coupon
        fields = ["id", "code", "percent_off", "active"]


class PaymentIntentSerializer(serializers.ModelSerializer[PaymentIntent]):
    class Meta:
        model = PaymentIntent
        fields = ["id", "order", "amount", "status", "provider_ref", "created_at"]


class RefundSerializer(serializers.ModelSerializer[Refund]):
    amount = serializers.DecimalField(max_digits=12, decimal_places=2, min_value=Decimal("0.01"))

    class Meta:
        model = Refund
        fields = ["id", "payment_intent", "amount", "reason", "created_at"]

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        intent: PaymentIntent = attrs["payment_intent"]
        if intent.status not in (PaymentIntent.Status.SUCCEEDED, PaymentIntent.Status.REFUNDED):
            raise serializers.ValidationError(
                {"payment_intent": [f"Payment {intent.pk} has status {intent.status}."]}
            )
        refunded = sum((r.amount for r in intent.refunds.all()), 0)
        if attrs["amount"] > intent.amount - refunded:
            raise serializers.ValidationError(
                {"amount": [f"At most {money(intent.amount - refunded)} can be refunded."]}
            )
        return attrs


class CarrierSerializer(serializers.ModelSerializer[Carrier]):
    class Meta:
        model = Carrier
        fields = ["id", "code", "name"]


class TrackingEventSerializer(serializers.ModelSerializer[TrackingEvent]):
    class Meta:
        model = TrackingEvent
        fields = ["id", "status", "location", "happened_at"]
        read_only_fields = ["happened_at"]


class ShipmentSerializer(serializers.ModelSerializer[Shipment]):
    carrier: serializers.SlugRelatedField[Carrier] = serializers.SlugRelatedField(
        slug_field="code", read_only=True)

    class Meta:
        model = Shipment
        fields = ["id", "order", "carrier", "tracking_number", "status", "created_at"]
