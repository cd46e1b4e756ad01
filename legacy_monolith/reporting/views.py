"""Report endpoints (staff only)."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.decorators import api_view, permission_classes
from rest_framework.request import Request
from rest_framework.response import Response

from legacy_monolith.common.permissions import IsStaff
from legacy_monolith.reporting.sales import DIMENSIONS, sales_report


@extend_schema(
    parameters=[OpenApiParameter("group_by", str, enum=sorted(DIMENSIONS))],
    responses=OpenApiTypes.OBJECT,
)
@api_view(["GET"])
@permission_classes([IsStaff])
def sales(request: Request) -> Response:
    """Sales by ``?group_by=category|brand|warehouse|carrier|tier`` (raw SQL)."""
    group_by = request.query_params.get("group_by", "category")
    if group_by not in DIMENSIONS:
        choices = ", ".join(sorted(DIMENSIONS))
        raise serializers.ValidationError({"group_by": [f"{group_by!r} is not one of {choices}."]})
    return Response({"group_by": group_by, "rows": sales_report(group_by)})
