from django.contrib.auth.models import AbstractUser
from django.db import models


class Member(AbstractUser):
    nickname = models.CharField(max_length=40)
    groups_extra = models.ManyToManyField("auth.Group", blank=True)
