"""Fill the read-only product copy from the monolith's own catalog, at cutover."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand
from django.db import transaction

from legacy_monolith.outbox.models import AggregateSequence, CatalogProductCopy
from legacy_monolith.store.models import Product


class Command(BaseCommand):
    help = ("At cutover: copy every product's sku, name and price into the read-only copy "
            "that the catalog service's events keep up to date from then on. Re-running it "
            "never reverts a copy row to an older state (issue 13): a row is only written "
            "when the catalog's sequence is above the copy's.")

    def handle(self, *args: Any, **options: Any) -> None:
        with transaction.atomic():
            sequences = dict(AggregateSequence.objects.filter(aggregate_type="store.Product")
                             .values_list("aggregate_id", "last"))
            have = dict(CatalogProductCopy.objects.values_list("product_id", "sequence"))
            copies = [CatalogProductCopy(product_id=p.pk, sku=p.sku, name=p.name, price=p.price,
                                         currency=p.currency, is_active=p.is_active,
                                         sequence=sequences.get(str(p.pk), 0))
                      for p in Product.objects.order_by("pk").iterator(chunk_size=2000)]
            newer = [c for c in copies if c.product_id not in have
                     or c.sequence > have[c.product_id]]
            CatalogProductCopy.objects.filter(product_id__in=[c.product_id for c in newer]
                                              ).delete()
            CatalogProductCopy.objects.bulk_create(newer, batch_size=1000)
        self.stdout.write(f"copied {len(newer)} products into the read-only catalog copy "
                          f"({len(copies) - len(newer)} already current)")
