from django.contrib.auth import get_user_model
from django.views.generic import ListView

from .models import Review


class ReviewList(ListView):
    def get_queryset(self):
        return Review.objects.filter(author__in=get_user_model().objects.all())
