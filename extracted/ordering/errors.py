"""The ordering service's API errors (the monolith's codes and messages)."""

from __future__ import annotations

from rest_framework import exceptions


class Conflict(exceptions.APIException):
    """The order is not in a state that allows the action (409, as in the monolith)."""

    status_code = 409
    default_detail = "The resource is not in a state that allows this action."
    default_code = "conflict"
