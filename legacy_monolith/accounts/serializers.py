"""Customer serializers."""

from __future__ import annotations

from rest_framework import serializers

from legacy_monolith.accounts.models import Address, LoyaltyAccount, LoyaltyTransaction, User


class MeSerializer(serializers.ModelSerializer[User]):
    class Meta:
        model = User
        fields = [
            "id", "username", "email", "first_name", "last_name", "phone", "loyalty_tier",
            "is_staff",
        ]
        read_only_fields = ["id", "username", "loyalty_tier", "is_staff"]


class AddressSerializer(serializers.ModelSerializer[Address]):
    country = serializers.RegexField(r"^[A-Z]{2}$")

    class Meta:
        model = Address
        fields = ["id", "line1", "line2", "city", "postcode", "country", "is_default"]


class LoyaltyTransactionSerializer(serializers.ModelSerializer[LoyaltyTransaction]):
    class Meta:
        model = LoyaltyTransaction
        fields = ["id", "order", "points", "reason", "created_at"]


class LoyaltyAccountSerializer(serializers.ModelSerializer[LoyaltyAccount]):
    tier = serializers.CharField(source="user.loyalty_tier", read_only=True)

    class Meta:
        model = LoyaltyAccount
        fields = ["points", "tier"]
