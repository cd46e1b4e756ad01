"""Review serializers."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from legacy_monolith.reviews.models import ModerationDecision, Review, ReviewVote
from legacy_monolith.store.models import Product


class ReviewSerializer(serializers.ModelSerializer[Review]):
    product = serializers.PrimaryKeyRelatedField(queryset=Product.objects.filter(is_active=True))
    user = serializers.CharField(source="user.username", read_only=True)
    rating = serializers.IntegerField(min_value=1, max_value=5)

    class Meta:
        model = Review
        fields = [
            "id", "product", "user", "rating", "title", "body", "status", "created_at",
            "updated_at",
        ]
        read_only_fields = ["status", "created_at", "updated_at"]

    def update(self, instance: Review, validated_data: dict[str, Any]) -> Review:
        validated_data.pop("product", None)  # a review never moves to another product
        # An edited review goes back to moderation.
        validated_data["status"] = Review.Status.PENDING
        return super().update(instance, validated_data)


class ModerateSerializer(serializers.Serializer[Any]):
    decision = serializers.ChoiceField(choices=["approve", "reject"])
    note = serializers.CharField(required=False, allow_blank=True, default="")


class ModerationDecisionSerializer(serializers.ModelSerializer[ModerationDecision]):
    moderator = serializers.CharField(source="moderator.username", read_only=True)

    class Meta:
        model = ModerationDecision
        fields = ["review", "moderator", "decision", "note", "decided_at"]


class VoteSerializer(serializers.ModelSerializer[ReviewVote]):
    class Meta:
        model = ReviewVote
        fields = ["id", "review", "helpful"]
        read_only_fields = ["review"]
