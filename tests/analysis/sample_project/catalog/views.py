from django.db.models.expressions import RawSQL
from rest_framework import viewsets

from .models import Product
from .serializers import ProductSerializer


class ProductViewSet(viewsets.ModelViewSet):
    serializer_class = ProductSerializer

    def get_queryset(self):
        return Product.objects.annotate(
            reviews=RawSQL("SELECT COUNT(*) FROM reviews_review r "
                           "WHERE r.product_id = catalog_product.id", ())
        ).extra(tables=["core_tag"], where=["core_tag.name = 'sale'"])


def cheap_products(request):
    return list(Product.objects.raw("SELECT * FROM catalog_product WHERE price < %s", [10]))
