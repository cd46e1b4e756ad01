from blog.views import everything, publish
from django.urls import path, re_path

urlpatterns = [
    path("posts/<int:pk>/publish/", publish),
    re_path(r"^(?P<path>.*)$", everything),  # one catch-all view for the rest
]
