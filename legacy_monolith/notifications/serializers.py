"""Notification serializers."""

from __future__ import annotations

from rest_framework import serializers

from legacy_monolith.notifications.models import (
    EmailTemplate,
    NotificationPreference,
    OutboundMessage,
)


class OutboundMessageSerializer(serializers.ModelSerializer[OutboundMessage]):
    template: serializers.SlugRelatedField[EmailTemplate] = serializers.SlugRelatedField(
        slug_field="code", read_only=True)
    subject_type = serializers.SerializerMethodField()

    class Meta:
        model = OutboundMessage
        fields = [
            "id", "template", "status", "rendered_subject", "subject_type", "object_id",
            "created_at",
        ]

    def get_subject_type(self, obj: OutboundMessage) -> str | None:
        ct = obj.content_type
        return None if ct is None else f"{ct.app_label}.{ct.model}"


class PreferenceSerializer(serializers.ModelSerializer[NotificationPreference]):
    class Meta:
        model = NotificationPreference
        fields = ["email_opt_in", "sms_opt_in"]


class EmailTemplateSerializer(serializers.ModelSerializer[EmailTemplate]):
    class Meta:
        model = EmailTemplate
        fields = ["id", "code", "subject", "body"]
