from django.contrib.auth.models import AbstractUser
from django.db import models


class Member(AbstractUser):
    bio = models.TextField()
