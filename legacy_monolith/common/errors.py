"""API errors beyond DRF's own, in DRF's ``{"detail": ...}`` format."""

from __future__ import annotations

from rest_framework.exceptions import APIException


class Conflict(APIException):
    """The resource is not in a state that allows the action (HTTP 409)."""

    status_code = 409
    default_detail = "The resource is not in a state that allows this action."
    default_code = "conflict"
