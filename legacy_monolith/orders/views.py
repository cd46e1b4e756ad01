"""Cart, checkout, orders, payments and shipping endpoints.

Half legacy function views (cart, checkout), half viewsets: the way an old codebase grows.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action, api_view, permission_classes
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from legacy_monolith.accounts.signed_in import signed_in
from legacy_monolith.common.permissions import IsAuthenticatedReadStaffWrite, IsStaff
from legacy_monolith.orders import actions
from legacy_monolith.orders.models import (
    Carrier,
    CartItem,
    Coupon,
    Order,
    PaymentIntent,
    Refund,
    Shipment,
    TrackingEvent,
)
from legacy_monolith.orders.serializers import (
    AddCartItemSerializer,
    CarrierSerializer,
    CartSerializer,
    CheckoutSerializer,
    CouponSerializer,
    OrderSerializer,
    PaymentIntentSerializer,
    PaySerializer,
    RefundSerializer,
    ShipmentSerializer,
    ShipSerializer,
    TrackingEventSerializer,
    UpdateCartItemSerializer,
)

# Tangle: ordering views read inventory tables directly.
from legacy_monolith.store.models import StockLevel
from legacy_monolith.utils import is_staff


def _cart_response(user: Any, code: int = status.HTTP_200_OK) -> Response:
    cart = actions.cart_for(user)
    items = cart.items.select_related("product")
    data = CartSerializer(cart).data
    data["items"] = CartSerializer().fields["items"].to_representation(items)
    data["total"] = CartSerializer().get_total(cart)
    return Response(data, status=code)


@extend_schema(responses=CartSerializer)
@api_view(["GET", "DELETE"])
@permission_classes([IsAuthenticated])
def cart_detail(request: Request) -> Response:
    """The signed-in user's cart; DELETE empties it."""
    if request.method == "DELETE":
        actions.cart_for(request.user).items.all().delete()
        return Response(status=status.HTTP_204_NO_CONTENT)
    return _cart_response(request.user)


@extend_schema(request=AddCartItemSerializer, responses={201: CartSerializer})
@api_view(["POST"])
@permission_classes([IsAuthenticated])
def cart_items(request: Request) -> Response:
    """Add a product to the cart (adding it again adds to the quantity)."""
    payload = AddCartItemSerializer(data=request.data)
    payload.is_valid(raise_exception=True)
    product, quantity = payload.validated_data["product"], payload.validated_data["quantity"]
    cart = actions.cart_for(request.user)
    item, created = CartItem.objects.get_or_create(
        cart=cart, product=product, defaults={"quantity": quantity}
    )
    if not created:
        item.quantity = min(item.quantity + quantity, 99)
        item.save(update_fields=["quantity"])
    return _cart_response(request.user, status.HTTP_201_CREATED)


@extend_schema(request=UpdateCartItemSerializer, responses=CartSerializer)
@api_view(["PATCH", "DELETE"])
@permission_classes([IsAuthenticated])
def cart_item_detail(request: Request, pk: int) -> Response:
    """Change the quantity of a cart line, or remove it."""
    item = get_object_or_404(CartItem, pk=pk, cart__user=request.user)
    if request.method == "DELETE":
        item.delete()
        return Response(status=status.HTTP_204_NO_CONTENT)
    payload = UpdateCartItemSerializer(data=request.data)
    payload.is_valid(raise_exception=True)
    item.quantity = payload.validated_data["quantity"]
    item.save(update_fields=["quantity"])
    return _cart_response(request.user)


@extend_schema(request=CheckoutSerializer, responses={201: OrderSerializer})
@api_view(["POST"])
@permission_classes([IsAuthenticated])
def checkout(request: Request) -> Response:
    """Turn the cart into a pending order."""
    payload = CheckoutSerializer(data=request.data)
    payload.is_valid(raise_exception=True)
    order = actions.checkout(
        request.user, payload.validated_data["shipping_address"],
        payload.validated_data.get("coupon", ""),
    )
    return Response(OrderSerializer(order).data, status=status.HTTP_201_CREATED)


class OrderViewSet(viewsets.ReadOnlyModelViewSet):  # type: ignore[type-arg]
    """Orders: shoppers see theirs, staff see all; pay, cancel and ship are actions."""

    serializer_class = OrderSerializer
    permission_classes = [IsAuthenticated]
    filterset_fields = ["status", "user"]
    search_fields = ["number"]
    ordering_fields = ["id", "created_at", "total"]
    ordering = ["-id"]
    lookup_value_converter = "int"

    def get_queryset(self) -> QuerySet[Order]:
        # No prefetch of lines or products: the legacy N+1, pinned in the tests.
        queryset = Order.objects.select_related("coupon")
        if getattr(self, "swagger_fake_view", False):
            return queryset.none()
        if is_staff(self.request.user):
            return queryset
        return queryset.filter(user=signed_in(self.request))

    @action(detail=True, methods=["post"])
    def pay(self, request: Request, pk: int | None = None) -> Response:
        order = self.get_object()
        payload = PaySerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        actions.pay(order, payload.validated_data["method"])
        return Response(OrderSerializer(Order.objects.get(pk=order.pk)).data)

    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: int | None = None) -> Response:
        order = actions.cancel(self.get_object(), request.user)
        return Response(OrderSerializer(order).data)

    @action(detail=True, methods=["post"], permission_classes=[IsStaff])
    def ship(self, request: Request, pk: int | None = None) -> Response:
        order = self.get_object()
        payload = ShipSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        shipment = actions.ship(order, payload.validated_data["carrier"], request.user)
        # after the ordering cutover the order is still paid: its owner makes it shipped
        asked = shipment.order.status != Order.Status.SHIPPED
        return Response(ShipmentSerializer(shipment).data, status=status.HTTP_202_ACCEPTED
                        if asked else status.HTTP_201_CREATED)

    @action(detail=True, methods=["get"])
    def availability(self, request: Request, pk: int | None = None) -> Response:
        """Units on hand for each line (ordering reading inventory's table)."""
        order = self.get_object()
        rows = []
        for line in order.lines.all():
            on_hand = sum(
                StockLevel.objects.filter(product_id=line.product_id).values_list(
                    "quantity", flat=True
                )
            )
            rows.append({"line": line.pk, "product": line.product_id, "on_hand": on_hand})
        return Response({"order": order.pk, "lines": rows})


class CouponViewSet(viewsets.ModelViewSet):  # type: ignore[type-arg]
    queryset = Coupon.objects.all()
    serializer_class = CouponSerializer
    permission_classes = [IsStaff]
    filterset_fields = ["active"]
    search_fields = ["code"]
    lookup_value_converter = "int"


class PaymentIntentViewSet(viewsets.ReadOnlyModelViewSet):  # type: ignore[type-arg]
    serializer_class = PaymentIntentSerializer
    permission_classes = [IsAuthenticated]
    filterset_fields = ["status", "order"]
    ordering_fields = ["id", "amount"]
    lookup_value_converter = "int"

    def get_queryset(self) -> QuerySet[PaymentIntent]:
        if getattr(self, "swagger_fake_view", False) or is_staff(self.request.user):
            return PaymentIntent.objects.all()
        return PaymentIntent.objects.filter(order__user=signed_in(self.request))


class RefundViewSet(
    mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet  # type: ignore[type-arg]
):
    queryset = Refund.objects.all()
    serializer_class = RefundSerializer
    permission_classes = [IsStaff]
    filterset_fields = ["payment_intent"]
    lookup_value_converter = "int"


class CarrierViewSet(viewsets.ModelViewSet):  # type: ignore[type-arg]
    queryset = Carrier.objects.all()
    serializer_class = CarrierSerializer
    permission_classes = [IsAuthenticatedReadStaffWrite]
    search_fields = ["code", "name"]
    lookup_value_converter = "int"


class ShipmentViewSet(viewsets.ReadOnlyModelViewSet):  # type: ignore[type-arg]
    serializer_class = ShipmentSerializer
    permission_classes = [IsAuthenticated]
    filterset_fields = ["status", "order", "carrier"]
    lookup_value_converter = "int"

    def get_queryset(self) -> QuerySet[Shipment]:
        queryset = Shipment.objects.select_related("carrier")
        if getattr(self, "swagger_fake_view", False) or is_staff(self.request.user):
            return queryset
        return queryset.filter(order__user=signed_in(self.request))

    @action(detail=True, methods=["get", "post"])
    def tracking(self, request: Request, pk: int | None = None) -> Response:
        """The shipment's tracking events; staff POST a new one (``delivered`` closes it)."""
        shipment = self.get_object()
        if request.method == "GET":
            events = TrackingEvent.objects.filter(shipment=shipment)
            return Response(TrackingEventSerializer(events, many=True).data)
        if not is_staff(request.user):
            self.permission_denied(request, message="Only staff may add tracking events.")
        payload = TrackingEventSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        from django.utils import timezone

        event = payload.save(shipment=shipment, happened_at=timezone.now())
        new_status = {"delivered": Shipment.Status.DELIVERED}.get(
            event.status, Shipment.Status.IN_TRANSIT
        )
        Shipment.objects.filter(pk=shipment.pk).update(status=new_status)
        return Response(TrackingEventSerializer(event).data, status=status.HTTP_201_CREATED)
