"""URLs of the ordering service: the monolith's cart, checkout, order and coupon paths."""

from __future__ import annotations

from django.urls import include, path
from rest_framework.routers import SimpleRouter

from extracted.ordering import views
from extracted.servicekit.urls import service_urls

router = SimpleRouter(use_regex_path=False)
router.register("orders", views.OrderViewSet, basename="order")
router.register("coupons", views.CouponViewSet, basename="coupon")

api = [
    path("cart/", views.cart_detail, name="cart"),
    path("cart/items/", views.cart_items, name="cart-items"),
    path("cart/items/<int:pk>/", views.cart_item_detail, name="cart-item-detail"),
    path("checkout/", views.checkout, name="checkout"),
    *router.urls,
]

urlpatterns = [
    path("api/", include(api)),
    *service_urls(),
]
