"""Reviews: public approved reads, own writes, staff moderation, votes."""

from __future__ import annotations

from typing import Any

from rest_framework.test import APIClient

from legacy_monolith.notifications.models import OutboundMessage
from legacy_monolith.reviews.models import ModerationDecision, Review


def test_anonymous_sees_only_approved_reviews(anon: APIClient, shop: Any) -> None:
    body = anon.get("/api/reviews/").json()
    assert body["count"] == 2
    assert {r["status"] for r in body["results"]} == {"approved"}


def test_authors_see_their_pending_reviews_and_staff_see_all(bob_client: APIClient,
                                                            staff_client: APIClient,
                                                            shop: Any) -> None:
    assert bob_client.get("/api/reviews/").json()["count"] == 3
    assert staff_client.get("/api/reviews/?status=pending").json()["count"] == 1


def test_review_list_query_count_is_pinned(anon: APIClient, shop: Any,
                                           django_assert_num_queries: Any) -> None:
    with django_assert_num_queries(2):
        assert anon.get("/api/reviews/").status_code == 200


def test_create_review_needs_auth_and_valid_rating(anon: APIClient, alice_client: APIClient,
                                                   shop: Any) -> None:
    payload = {"product": shop.products[1].pk, "rating": 6, "title": "Hm"}
    assert anon.post("/api/reviews/", payload).status_code == 401
    bad = alice_client.post("/api/reviews/", {**payload, "product": 999})
    assert bad.status_code == 400
    assert set(bad.json()) == {"product", "rating"}
    created = alice_client.post("/api/reviews/", {**payload, "rating": 4})
    assert created.status_code == 201
    assert created.json()["status"] == "pending"
    assert created.json()["user"] == "alice"


def test_only_the_author_or_staff_edit_and_delete(alice_client: APIClient,
                                                  bob_client: APIClient,
                                                  staff_client: APIClient, shop: Any) -> None:
    review = Review.objects.get(title="Good")  # bob's, approved
    url = f"/api/reviews/{review.pk}/"
    assert alice_client.patch(url, {"title": "Mine now"}).status_code == 403
    edited = bob_client.patch(url, {"title": "Very good"})
    assert edited.status_code == 200
    assert edited.json()["status"] == "pending"  # edits go back to moderation
    assert alice_client.delete(url).status_code == 404  # pending now: hidden from alice
    assert staff_client.delete(url).status_code == 204


def test_moderation_is_staff_only_and_notifies(bob_client: APIClient, staff_client: APIClient,
                                               shop: Any) -> None:
    review = Review.objects.get(title="Spam")
    url = f"/api/reviews/{review.pk}/moderate/"
    assert bob_client.post(url, {"decision": "approve"}).status_code == 403
    assert staff_client.post(url, {"decision": "maybe"}).json().keys() == {"decision"}
    decided = staff_client.post(url, {"decision": "reject", "note": "spam"})
    assert decided.status_code == 200
    assert decided.json()["moderator"] == "staff"
    assert Review.objects.get(pk=review.pk).status == "rejected"
    assert ModerationDecision.objects.get(review=review).note == "spam"
    assert OutboundMessage.objects.filter(template__code="review_moderated").count() == 1
    assert staff_client.post("/api/reviews/99999/moderate/", {}).status_code == 404


def test_votes(alice_client: APIClient, bob_client: APIClient, shop: Any) -> None:
    review = Review.objects.get(title="Good")  # bob's
    url = f"/api/reviews/{review.pk}/vote/"
    assert alice_client.post(url, {"helpful": True}).status_code == 201
    assert alice_client.post(url, {"helpful": False}).status_code == 200
    assert review.votes.get().helpful is False
    own = bob_client.post(url, {"helpful": True})
    assert own.status_code == 400
    assert "review" in own.json()
    assert alice_client.post(url, {}).json() == {"helpful": ["This field is required."]}
    assert APIClient().post(url, {"helpful": True}).status_code == 401
