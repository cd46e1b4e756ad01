"""Queue outbound messages (the notifications side effect every other app triggers)."""

from __future__ import annotations

from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.db import models

from legacy_monolith.notifications.models import (
    EmailTemplate,
    NotificationPreference,
    OutboundMessage,
)

DEFAULT_TEMPLATES: dict[str, tuple[str, str]] = {
    "order_paid": ("Thank you for order {subject}", "We received your payment."),
    "order_shipped": ("Order {subject} is on its way", "Track it in your account."),
    "order_cancelled": ("Order {subject} was cancelled", "Any payment will be refunded."),
    "review_moderated": ("Your review {subject}", "Your review was moderated."),
}


def template(code: str) -> EmailTemplate:
    """The template with ``code``, created from the defaults the first time."""
    subject, body = DEFAULT_TEMPLATES.get(code, (code, code))
    found, _ = EmailTemplate.objects.get_or_create(
        code=code, defaults={"subject": subject, "body": body}
    )
    return found


def send(user: Any, code: str, about: models.Model) -> OutboundMessage | None:
    """Queue a message to ``user`` about ``about`` unless the user opted out of email."""
    opted_out = NotificationPreference.objects.filter(user=user, email_opt_in=False).exists()
    if opted_out:
        return None
    tpl = template(code)
    return OutboundMessage.objects.create(
        user=user,
        template=tpl,
        content_type=ContentType.objects.get_for_model(about),
        object_id=about.pk,
        rendered_subject=tpl.subject.replace("{subject}", str(about))[:200],
    )
