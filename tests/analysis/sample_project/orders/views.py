from django.apps import apps
from django.db import connection
from django.views.generic import ListView

from .models import Order, OrderLine

REPORT_SQL = """
SELECT o.id, SUM(p.price) FROM sales_order o
JOIN sales_orderline l ON l.order_id = o.id
JOIN catalog_product p ON p.id = l.product_id
WHERE o.created >= %s GROUP BY o.id
"""


def order_detail(request, pk):
    return Order.objects.get(pk=pk)


class OrderLines(ListView):
    model = OrderLine


def yearly_report(request, year):
    Invoice = apps.get_model("billing", "Invoice")
    with connection.cursor() as cursor:
        cursor.execute(REPORT_SQL, [f"{year}-01-01"])
        return cursor.fetchall(), Invoice.objects.count()
