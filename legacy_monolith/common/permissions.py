"""Permissions shared by the apps."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request

from legacy_monolith.utils import is_staff


class IsStaffOrReadOnly(BasePermission):
    """Anyone may read; only staff may write (the catalog's rule)."""

    def has_permission(self, request: Request, view: Any) -> bool:
        return request.method in SAFE_METHODS or is_staff(request.user)


class IsStaff(BasePermission):
    def has_permission(self, request: Request, view: Any) -> bool:
        return is_staff(request.user)


class IsAuthenticatedReadStaffWrite(BasePermission):
    """Signed-in users may read; only staff may write."""

    def has_permission(self, request: Request, view: Any) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        return request.method in SAFE_METHODS or is_staff(request.user)
