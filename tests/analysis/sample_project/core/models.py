"""Abstract bases and mixins used across apps; generic tags; an audit log."""
from django.conf import settings
from django.contrib.contenttypes.fields import GenericForeignKey
from django.db import models


class TimeStamped(models.Model):
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        abstract = True


class OwnedMixin(models.Model):
    # declared on an abstract model: every concrete child gets its own FK to the user
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)

    class Meta:
        abstract = True


class Tag(models.Model):
    name = models.SlugField(unique=True)


class TaggedItem(models.Model):
    tag = models.ForeignKey(Tag, on_delete=models.CASCADE)
    content_type = models.ForeignKey("contenttypes.ContentType", on_delete=models.CASCADE)
    object_id = models.PositiveIntegerField()
    content_object = GenericForeignKey("content_type", "object_id")


class AuditLog(TimeStamped, OwnedMixin):
    action = models.CharField(max_length=40)
