"""Reviews: anyone reads approved ones, shoppers write their own, staff moderate."""

from __future__ import annotations

from typing import Any

from django.db.models import Q, QuerySet
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.permissions import SAFE_METHODS, AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from legacy_monolith.accounts.signed_in import signed_in
from legacy_monolith.common.permissions import IsStaff
from legacy_monolith.notifications import actions as notifications
from legacy_monolith.reviews.models import ModerationDecision, Review, ReviewVote
from legacy_monolith.reviews.serializers import (
    ModerateSerializer,
    ModerationDecisionSerializer,
    ReviewSerializer,
    VoteSerializer,
)
from legacy_monolith.utils import audit, is_staff


class ReviewViewSet(viewsets.ModelViewSet):  # type: ignore[type-arg]
    serializer_class = ReviewSerializer
    filterset_fields = ["product", "status", "rating"]
    search_fields = ["title", "body"]
    ordering_fields = ["id", "rating", "created_at"]
    ordering = ["-id"]
    lookup_value_converter = "int"

    def get_permissions(self) -> list[Any]:
        if self.request.method in SAFE_METHODS:
            return [AllowAny()]
        if self.action == "moderate":
            return [IsStaff()]
        return [IsAuthenticated()]

    def get_queryset(self) -> QuerySet[Review]:
        queryset = Review.objects.select_related("user")
        user = self.request.user
        if getattr(self, "swagger_fake_view", False) or is_staff(user):
            return queryset
        visible = Q(status=Review.Status.APPROVED)
        if user.is_authenticated:
            visible |= Q(user=user)
        return queryset.filter(visible)

    def perform_create(self, serializer: Any) -> None:
        serializer.save(user=self.request.user)

    def _check_owner(self, review: Review) -> None:
        if review.user_id != self.request.user.pk and not is_staff(self.request.user):
            raise PermissionDenied("Only the author or staff may change this review.")

    def perform_update(self, serializer: Any) -> None:
        self._check_owner(serializer.instance)
        serializer.save()

    def perform_destroy(self, instance: Review) -> None:
        self._check_owner(instance)
        instance.delete()

    @action(detail=True, methods=["post"])
    def moderate(self, request: Request, pk: int | None = None) -> Response:
        """Approve or reject a review (staff); the author is notified."""
        review = self.get_object()
        payload = ModerateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        decision = payload.validated_data["decision"]
        review.status = (
            Review.Status.APPROVED if decision == "approve" else Review.Status.REJECTED
        )
        review.save(update_fields=["status", "updated_at"])
        moderation, _ = ModerationDecision.objects.update_or_create(
            review=review,
            defaults={
                "moderator": signed_in(request),
                "decision": decision,
                "note": payload.validated_data["note"],
            },
        )
        notifications.send(review.user, "review_moderated", review)
        audit(request.user, f"review.{decision}", review)
        return Response(ModerationDecisionSerializer(moderation).data)

    @action(detail=True, methods=["post"])
    def vote(self, request: Request, pk: int | None = None) -> Response:
        """Mark a review helpful or not (once per user; voting again changes the vote)."""
        review = self.get_object()
        if review.user_id == request.user.pk:
            raise serializers.ValidationError({"review": ["You cannot vote on your own review."]})
        payload = VoteSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        vote, created = ReviewVote.objects.update_or_create(
            review=review, user=signed_in(request),
            defaults={"helpful": payload.validated_data["helpful"]},
        )
        code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
        return Response(VoteSerializer(vote).data, status=code)
