from django.db import models


class ProductQuerySet(models.QuerySet):
    def visible(self):
        return self.filter(active=True)


class ProductManager(models.Manager):
    def cheap(self):
        return self.filter(price__lt=10)
