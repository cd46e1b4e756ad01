from catalog import models as catalog_models
from django.contrib.contenttypes.fields import GenericRelation
from django.db import models


class Review(models.Model):
    product = models.ForeignKey(catalog_models.Product, on_delete=models.CASCADE)
    author = models.ForeignKey("people.Member", on_delete=models.CASCADE)
    tags = GenericRelation("core.TaggedItem")
