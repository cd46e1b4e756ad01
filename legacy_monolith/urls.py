"""Every URL of the shop. API under /api/; health outside it."""

from __future__ import annotations

from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.authtoken.views import obtain_auth_token
from rest_framework.routers import SimpleRouter

from legacy_monolith.accounts import views as accounts
from legacy_monolith.common import health
from legacy_monolith.common.api_root import make_api_root
from legacy_monolith.common.assets import static_asset
from legacy_monolith.notifications import views as notifications
from legacy_monolith.orders import views as orders
from legacy_monolith.outbox.views import CatalogEventsView, SagaEventsView
from legacy_monolith.reporting import views as reporting
from legacy_monolith.reviews import views as reviews
from legacy_monolith.store import views as store

# Path converters (not regexes) so route patterns read `api/products/<int:pk>/`.
router = SimpleRouter(use_regex_path=False)
router.register("products", store.ProductViewSet, basename="product")
router.register("categories", store.CategoryViewSet, basename="category")
router.register("brands", store.BrandViewSet, basename="brand")
router.register("tags", store.TagViewSet, basename="tag")
router.register("warehouses", store.WarehouseViewSet, basename="warehouse")
router.register("stock-levels", store.StockLevelViewSet, basename="stocklevel")
router.register("stock-movements", store.StockMovementViewSet, basename="stockmovement")
router.register("orders", orders.OrderViewSet, basename="order")
router.register("coupons", orders.CouponViewSet, basename="coupon")
router.register("payments", orders.PaymentIntentViewSet, basename="payment")
router.register("refunds", orders.RefundViewSet, basename="refund")
router.register("carriers", orders.CarrierViewSet, basename="carrier")
router.register("shipments", orders.ShipmentViewSet, basename="shipment")
router.register("reviews", reviews.ReviewViewSet, basename="review")
router.register("addresses", accounts.AddressViewSet, basename="address")
router.register(
    "notifications/messages", notifications.OutboundMessageViewSet, basename="message"
)
router.register(
    "notifications/templates", notifications.EmailTemplateViewSet, basename="emailtemplate"
)

api = [
    path("auth/token/", obtain_auth_token, name="auth-token"),
    path("me/", accounts.me, name="me"),
    path("loyalty/", accounts.loyalty, name="loyalty"),
    path("cart/", orders.cart_detail, name="cart"),
    path("cart/items/", orders.cart_items, name="cart-items"),
    path("cart/items/<int:pk>/", orders.cart_item_detail, name="cart-item-detail"),
    path("checkout/", orders.checkout, name="checkout"),
    path("stock/reserve/", store.reserve_stock, name="stock-reserve"),
    path("notifications/preferences/", notifications.preferences, name="preferences"),
    path("reports/sales/", reporting.sales, name="report-sales"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    *router.urls,
]

api.insert(0, path("", make_api_root(api), name="api-root"))

urlpatterns = [
    re_path(r"^static/(?P<path>.*)$", static_asset, name="static"),  # Swagger UI, offline
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("internal/catalog-events/", CatalogEventsView.as_view(), name="internal-catalog-events"),
    path("internal/saga-events/", SagaEventsView.as_view(), name="internal-saga-events"),
    path("api/", include(api)),
]
