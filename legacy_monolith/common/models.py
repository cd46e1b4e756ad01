"""The shared kernel every app leans on: base models, tags, the audit log."""

from __future__ import annotations

from typing import Self, TypeVar

from django.conf import settings
from django.contrib.contenttypes.fields import GenericForeignKey
from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.utils import timezone

from legacy_monolith.outbox.managers import OutboxModel


class TimeStampedModel(models.Model):
    """Adds ``created_at``/``updated_at``, set by Django on save."""

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


_Model = TypeVar("_Model", bound="SoftDeleteModel")


class SoftDeleteQuerySet(models.QuerySet[_Model]):
    def alive(self) -> Self:
        return self.filter(deleted_at__isnull=True)


class SoftDeleteModel(models.Model):
    """Rows are marked deleted, never removed, so old orders keep their addresses."""

    deleted_at = models.DateTimeField(null=True, blank=True)

    objects = SoftDeleteQuerySet.as_manager()

    class Meta:
        abstract = True

    def soft_delete(self) -> None:
        """Mark the row deleted now."""
        self.deleted_at = timezone.now()
        self.save(update_fields=["deleted_at"])


class Tag(OutboxModel):
    name = models.CharField(max_length=60)
    slug = models.SlugField(max_length=60, unique=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug


class TaggedItem(models.Model):
    """Tags on anything (the generic relation of the shared kernel)."""

    tag = models.ForeignKey(Tag, on_delete=models.CASCADE, related_name="tagged_items")
    content_type = models.ForeignKey(ContentType, on_delete=models.CASCADE)
    object_id = models.PositiveBigIntegerField()
    content_object = GenericForeignKey("content_type", "object_id")

    class Meta:
        indexes = [models.Index(fields=["content_type", "object_id"])]


class AuditLogEntry(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    action = models.CharField(max_length=80)
    content_type = models.ForeignKey(ContentType, null=True, on_delete=models.SET_NULL)
    object_id = models.PositiveBigIntegerField(null=True)
    target = GenericForeignKey("content_type", "object_id")
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-at", "-id"]
