"""Customers: the custom user, addresses and loyalty (which reaches into orders)."""

from __future__ import annotations

from django.contrib.auth.models import AbstractUser
from django.db import models

from legacy_monolith.common.models import SoftDeleteModel, TimeStampedModel


class User(AbstractUser):
    class LoyaltyTier(models.TextChoices):
        BRONZE = "bronze"
        SILVER = "silver"
        GOLD = "gold"

    loyalty_tier = models.CharField(
        max_length=10, choices=LoyaltyTier.choices, default=LoyaltyTier.BRONZE
    )
    phone = models.CharField(max_length=30, blank=True)


class Address(SoftDeleteModel, TimeStampedModel):
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="addresses")
    line1 = models.CharField(max_length=200)
    line2 = models.CharField(max_length=200, blank=True)
    city = models.CharField(max_length=100)
    postcode = models.CharField(max_length=20)
    country = models.CharField(max_length=2)
    is_default = models.BooleanField(default=False)

    class Meta:
        ordering = ["id"]


class LoyaltyAccount(models.Model):
    user = models.OneToOneField(User, on_delete=models.CASCADE, related_name="loyalty")
    points = models.IntegerField(default=0)


class LoyaltyTransaction(models.Model):
    account = models.ForeignKey(
        LoyaltyAccount, on_delete=models.CASCADE, related_name="transactions"
    )
    # Tangle: customers reach into ordering.
    order = models.ForeignKey(
        "orders.Order", null=True, blank=True, on_delete=models.SET_NULL,
        related_name="loyalty_transactions",
    )
    points = models.IntegerField()
    reason = models.CharField(max_length=100)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
