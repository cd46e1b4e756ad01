from core.models import Tag, TimeStamped
from django.db import models

from ..managers import ProductManager, ProductQuerySet


class Product(TimeStamped):
    category = models.ForeignKey("catalog.Category", on_delete=models.PROTECT)
    tags = models.ManyToManyField(Tag, blank=True)
    price = models.DecimalField(max_digits=8, decimal_places=2)
    active = models.BooleanField(default=True)

    objects = ProductManager()
    visible = ProductQuerySet.as_manager()


class ProductProxy(Product):
    class Meta:
        proxy = True


class DigitalProduct(Product):
    download_url = models.URLField()
