"""Notification endpoints: the user's messages and preferences; templates for staff."""

from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import viewsets
from rest_framework.decorators import api_view, permission_classes
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from legacy_monolith.accounts.signed_in import signed_in
from legacy_monolith.common.permissions import IsStaff
from legacy_monolith.notifications.models import (
    EmailTemplate,
    NotificationPreference,
    OutboundMessage,
)
from legacy_monolith.notifications.serializers import (
    EmailTemplateSerializer,
    OutboundMessageSerializer,
    PreferenceSerializer,
)


class OutboundMessageViewSet(viewsets.ReadOnlyModelViewSet):  # type: ignore[type-arg]
    serializer_class = OutboundMessageSerializer
    permission_classes = [IsAuthenticated]
    filterset_fields = ["status"]
    ordering_fields = ["id"]
    lookup_value_converter = "int"

    def get_queryset(self) -> QuerySet[OutboundMessage]:
        if getattr(self, "swagger_fake_view", False):
            return OutboundMessage.objects.none()
        return OutboundMessage.objects.filter(user=signed_in(self.request)).select_related(
            "template", "content_type"
        )


class EmailTemplateViewSet(viewsets.ModelViewSet):  # type: ignore[type-arg]
    queryset = EmailTemplate.objects.all()
    serializer_class = EmailTemplateSerializer
    permission_classes = [IsStaff]
    search_fields = ["code", "subject"]
    lookup_value_converter = "int"


@extend_schema(request=PreferenceSerializer, responses=PreferenceSerializer)
@api_view(["GET", "PUT", "PATCH"])
@permission_classes([IsAuthenticated])
def preferences(request: Request) -> Response:
    """The user's email/SMS opt-ins (created with the defaults on first read)."""
    pref, _ = NotificationPreference.objects.get_or_create(user=signed_in(request))
    if request.method == "GET":
        return Response(PreferenceSerializer(pref).data)
    payload = PreferenceSerializer(pref, data=request.data, partial=request.method == "PATCH")
    payload.is_valid(raise_exception=True)
    payload.save()
    return Response(payload.data)
