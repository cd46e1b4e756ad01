"""The monolith's one pagination style: ``?page=`` and ``?page_size=`` (max 100)."""

from __future__ import annotations

from rest_framework.pagination import PageNumberPagination


class ShopPagination(PageNumberPagination):
    """Page-number pagination, 20 per page by default, like the monolith's ShopPagination."""

    page_size = 20
    page_size_query_param = "page_size"
    max_page_size = 100
