"""Cart, checkout, order and coupon endpoints: the monolith's paths, answers and errors.

``pay`` starts the checkout saga (``saga.py``) and answers 202 where the monolith answered
200 with a paid order: the consistency given up (docs/extracted-ordering.md). ``ship`` and
``availability`` under ``/api/orders/<id>/`` are the shipping and inventory contexts'
business: they stay in the monolith (the routes send them there); the service answers 404.
"""

from __future__ import annotations

from typing import Any

import django_filters
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from rest_framework import status, viewsets
from rest_framework.decorators import action, api_view, permission_classes
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from extracted.ordering import actions, saga
from extracted.ordering.models import CartItem, Coupon, Order
from extracted.ordering.serializers import (
    AddCartItemSerializer,
    CartSerializer,
    CheckoutSerializer,
    CouponSerializer,
    OrderSerializer,
    PaySerializer,
    UpdateCartItemSerializer,
)
from extracted.servicekit.auth import CallerIdentity


def _caller(request: Request) -> CallerIdentity:
    user = request.user
    assert isinstance(user, CallerIdentity)  # IsAuthenticated ran first
    return user


def is_staff(user: Any) -> bool:
    """True for an authenticated staff caller."""
    return bool(getattr(user, "is_authenticated", False) and getattr(user, "is_staff", False))


class IsStaff(BasePermission):
    """Staff only (coupons)."""

    def has_permission(self, request: Request, view: Any) -> bool:
        return is_staff(request.user)


def _cart_response(user: CallerIdentity, code: int = status.HTTP_200_OK) -> Response:
    cart = actions.cart_for(user)
    items = cart.items.select_related("product")
    data = CartSerializer(cart).data
    data["items"] = CartSerializer().fields["items"].to_representation(items)
    data["total"] = CartSerializer().get_total(cart)
    return Response(data, status=code)


@api_view(["GET", "DELETE"])
@permission_classes([IsAuthenticated])
def cart_detail(request: Request) -> Response:
    """The signed-in user's cart; DELETE empties it."""
    if request.method == "DELETE":
        actions.remove_items(list(actions.cart_for(_caller(request)).items.all()))
        return Response(status=status.HTTP_204_NO_CONTENT)
    return _cart_response(_caller(request))


@api_view(["POST"])
@permission_classes([IsAuthenticated])
def cart_items(request: Request) -> Response:
    """Add a product to the cart (adding it again adds to the quantity)."""
    payload = AddCartItemSerializer(data=request.data)
    payload.is_valid(raise_exception=True)
    actions.add_item(_caller(request), payload.validated_data["product"],
                     payload.validated_data["quantity"])
    return _cart_response(_caller(request), status.HTTP_201_CREATED)


@api_view(["PATCH", "DELETE"])
@permission_classes([IsAuthenticated])
def cart_item_detail(request: Request, pk: int) -> Response:
    """Change the quantity of a cart line, or remove it."""
    item = get_object_or_404(CartItem, pk=pk, cart__user_id=actions.user_id(_caller(request)))
    if request.method == "DELETE":
        actions.remove_items([item])
        return Response(status=status.HTTP_204_NO_CONTENT)
    payload = UpdateCartItemSerializer(data=request.data)
    payload.is_valid(raise_exception=True)
    actions.set_quantity(item, payload.validated_data["quantity"])
    return _cart_response(_caller(request))


@api_view(["POST"])
@permission_classes([IsAuthenticated])
def checkout(request: Request) -> Response:
    """Turn the cart into a pending order."""
    payload = CheckoutSerializer(data=request.data)
    payload.is_valid(raise_exception=True)
    order = actions.checkout(
        _caller(request), str(request.auth), payload.validated_data["shipping_address"],
        payload.validated_data.get("coupon", ""),
    )
    return Response(OrderSerializer(order).data, status=status.HTTP_201_CREATED)


class OrderFilter(django_filters.FilterSet):
    """``?status=`` and ``?user=`` as in the monolith (users are ids here)."""

    user = django_filters.NumberFilter(field_name="user_id")

    class Meta:
        model = Order
        fields = ["status", "user"]


class OrderViewSet(viewsets.ReadOnlyModelViewSet):  # type: ignore[type-arg]
    """Orders: shoppers see theirs, staff see all; cancel is an action."""

    serializer_class = OrderSerializer
    permission_classes = [IsAuthenticated]
    filterset_class = OrderFilter
    search_fields = ["number"]
    ordering_fields = ["id", "created_at", "total"]
    ordering = ["-id"]
    lookup_value_converter = "int"

    def get_queryset(self) -> QuerySet[Order]:
        queryset = Order.objects.select_related("coupon").prefetch_related("lines__product")
        if is_staff(self.request.user):
            return queryset
        return queryset.filter(user_id=actions.user_id(_caller(self.request)))

    @action(detail=True, methods=["post"])
    def pay(self, request: Request, pk: int | None = None) -> Response:
        """Start paying (the checkout saga): 202, the order pending until the reply."""
        order = self.get_object()
        payload = PaySerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        saga.request_payment(order, payload.validated_data["method"])
        return Response(OrderSerializer(Order.objects.get(pk=order.pk)).data,
                        status=status.HTTP_202_ACCEPTED)

    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: int | None = None) -> Response:
        order = actions.cancel(self.get_object())
        return Response(OrderSerializer(order).data)


class CouponViewSet(viewsets.ModelViewSet):  # type: ignore[type-arg]
    """Coupons, staff only."""

    queryset = Coupon.objects.all()
    serializer_class = CouponSerializer
    permission_classes = [IsStaff]
    filterset_fields = ["active"]
    search_fields = ["code"]
    lookup_value_converter = "int"

    def perform_create(self, serializer: Any) -> None:
        actions.save_coupon(serializer.save(), created=True)

    def perform_update(self, serializer: Any) -> None:
        actions.save_coupon(serializer.save(), created=False)

    def perform_destroy(self, instance: Coupon) -> None:
        actions.delete_coupon(instance)
