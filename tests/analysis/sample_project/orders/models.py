from catalog.models import Product
from core.models import OwnedMixin
from django.db import models


class Order(OwnedMixin):
    number = models.CharField(max_length=20)
    promotions = models.ManyToManyField("Promotion", through="OrderPromotion")


class OrderLine(models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="lines")
    product = models.ForeignKey(Product, on_delete=models.PROTECT)


class Promotion(models.Model):
    code = models.CharField(max_length=20)


class OrderPromotion(models.Model):
    order = models.ForeignKey("sales.Order", on_delete=models.CASCADE)
    promotion = models.ForeignKey(Promotion, on_delete=models.CASCADE)


class Invoice(models.Model):
    order = models.OneToOneField(Order, on_delete=models.CASCADE)

    class Meta:
        app_label = "billing"
        db_table = "billing_invoices"
