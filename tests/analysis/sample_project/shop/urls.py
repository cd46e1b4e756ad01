from django.urls import include, path, re_path
from orders import views as order_views
from reviews.views import ReviewList

urlpatterns = [
    path("api/", include("catalog.urls")),
    path("orders/<int:pk>/", order_views.order_detail, name="order-detail"),
    path("orders/<int:pk>/lines/", order_views.OrderLines.as_view(), name="order-lines"),
    re_path(r"^reports/(?P<year>\d{4})/$", order_views.yearly_report, name="yearly-report"),
    path("reviews/", ReviewList.as_view()),
]
