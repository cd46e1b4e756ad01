from django.db import models


class Category(models.Model):
    parent = models.ForeignKey("self", null=True, on_delete=models.SET_NULL)
    name = models.CharField(max_length=80)

    class Meta:
        db_table = "catalog_categories"
