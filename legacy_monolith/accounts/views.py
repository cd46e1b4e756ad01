"""Customer endpoints: me, addresses, loyalty."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import viewsets
from rest_framework.decorators import api_view, permission_classes
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from legacy_monolith.accounts.models import Address, LoyaltyAccount
from legacy_monolith.accounts.serializers import (
    AddressSerializer,
    LoyaltyAccountSerializer,
    LoyaltyTransactionSerializer,
    MeSerializer,
)
from legacy_monolith.accounts.signed_in import signed_in


@extend_schema(request=MeSerializer, responses=MeSerializer)
@api_view(["GET", "PATCH"])
@permission_classes([IsAuthenticated])
def me(request: Request) -> Response:
    """The signed-in user; PATCH changes name, email and phone."""
    if request.method == "PATCH":
        payload = MeSerializer(signed_in(request), data=request.data, partial=True)
        payload.is_valid(raise_exception=True)
        payload.save()
        return Response(payload.data)
    return Response(MeSerializer(signed_in(request)).data)


@extend_schema(responses=LoyaltyAccountSerializer)
@api_view(["GET"])
@permission_classes([IsAuthenticated])
def loyalty(request: Request) -> Response:
    """Points, tier and the 20 latest transactions."""
    account, _ = LoyaltyAccount.objects.get_or_create(user=signed_in(request))
    data = dict(LoyaltyAccountSerializer(account).data)
    data["transactions"] = LoyaltyTransactionSerializer(
        account.transactions.all()[:20], many=True
    ).data
    return Response(data)


class AddressViewSet(viewsets.ModelViewSet):  # type: ignore[type-arg]
    """The user's addresses; DELETE is a soft delete (old orders keep their address)."""

    serializer_class = AddressSerializer
    permission_classes = [IsAuthenticated]
    filterset_fields = ["country", "is_default"]
    ordering_fields = ["id"]
    lookup_value_converter = "int"

    def get_queryset(self) -> QuerySet[Address]:
        if getattr(self, "swagger_fake_view", False):
            return Address.objects.none()
        return Address.objects.alive().filter(user=signed_in(self.request))

    def perform_create(self, serializer: Any) -> None:
        serializer.save(user=self.request.user)

    def perform_destroy(self, instance: Address) -> None:
        instance.soft_delete()
