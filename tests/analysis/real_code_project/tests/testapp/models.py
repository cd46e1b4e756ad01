from django.db import models


class FixtureModel(models.Model):
    name = models.CharField(max_length=10)
