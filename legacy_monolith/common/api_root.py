"""``GET /api/``: the browsable front page of the API, a link to every endpoint."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from django.urls import URLPattern, URLResolver, reverse
from rest_framework.decorators import api_view, permission_classes
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response


def endpoint_paths(patterns: Iterable[URLPattern | URLResolver]) -> dict[str, str]:
    """``{"products": "product-list", ...}``: each named pattern that takes no argument."""
    return {str(p.pattern).strip("/") or p.name: p.name for p in patterns
            if isinstance(p, URLPattern) and p.name and not p.pattern.converters}


def make_api_root(patterns: list[URLPattern | URLResolver]) -> Callable[..., Any]:
    """A view listing ``name: absolute URL`` for each collection endpoint of ``patterns``."""
    names = endpoint_paths(patterns)

    @api_view(["GET"])
    @permission_classes([AllowAny])
    def api_root(request: Request) -> Response:
        """The shop's API: follow a link (most need a token: POST /api/auth/token/)."""
        return Response({path: request.build_absolute_uri(reverse(name))
                         for path, name in names.items()})

    return api_root
