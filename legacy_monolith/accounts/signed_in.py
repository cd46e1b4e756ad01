"""The signed-in user of a request, typed for views whose permissions refuse anonymous ones."""

from __future__ import annotations

from typing import cast

from django.http import HttpRequest
from rest_framework.request import Request

from legacy_monolith.accounts.models import User


def signed_in(request: Request | HttpRequest) -> User:
    """``request.user`` as a :class:`User`.

    A cast, not a check: the view's permission class (``IsAuthenticated`` and friends) is what
    guarantees a signed-in user; mypy cannot see that, so this says it once.
    """
    return cast(User, request.user)


__all__ = ["signed_in"]
