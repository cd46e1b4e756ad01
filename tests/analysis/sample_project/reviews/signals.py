from core.models import AuditLog
from django.db.models.signals import post_save
from django.dispatch import receiver

from reviews.models import Review


@receiver(post_save, sender=Review)
def log_review(sender, instance, **kwargs):
    AuditLog.objects.create(owner=instance.author, action="review")
