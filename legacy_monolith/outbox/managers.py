"""Models and querysets whose every write publishes to the outbox, bulk writes included.

How each way of writing is covered (all inside one transaction with the change):

* ``instance.save()`` (API, admin, shell): ``OutboxModel.save`` records after the write.
* ``instance.delete()``, ``QuerySet.delete()`` and cascades: Django's collector sends
  ``post_delete`` per row because a receiver is connected (``receivers``), inside its
  own transaction; the receiver records. ``SET_NULL`` children of a deleted category are
  updated by the collector without signals: a ``pre_delete`` receiver records them.
* ``QuerySet.update()``: ``OutboxQuerySet.update`` locks and lists the matching keys,
  updates exactly those, re-reads them and records.
* ``bulk_create``: recorded from the objects (keys come back from the database;
  ``ignore_conflicts``/``update_conflicts`` are refused because they hide which rows
  changed). ``bulk_update`` is built by Django on ``filter().update()``, so ``update``
  publishes it.
* Related managers (``product.images.create``, ``product.tags.add/remove/set``) use these
  querysets, because they build on the model's default manager.
* Not covered: raw SQL (``cursor.execute``) and ``sql_flush`` (``clear_shop``); they bypass
  the ORM. ``strangler reconcile`` is the net for those.
"""

from __future__ import annotations

from typing import Any

from django.db import connection, models, transaction

from legacy_monolith.outbox.publish import OutboxError, record, record_rows


class OutboxQuerySet(models.QuerySet):  # type: ignore[type-arg]
    """A queryset whose bulk writes publish one event per changed row."""

    def update(self, **kwargs: Any) -> int:
        with transaction.atomic(using=self.db):
            query = self.select_for_update() if connection.features.has_select_for_update \
                else self
            keys = list(query.order_by().values_list("pk", flat=True))
            if not keys:
                return 0
            plain: models.QuerySet[Any] = models.QuerySet(self.model, using=self.db).filter(
                pk__in=keys)
            count = plain.update(**kwargs)
            record_rows(self.model, self.model._base_manager.using(self.db)
                        .filter(pk__in=keys).order_by("pk"), "updated")
            return count

    def bulk_create(self, objs: Any, *args: Any, **kwargs: Any) -> list[Any]:
        if kwargs.get("ignore_conflicts") or kwargs.get("update_conflicts"):
            raise OutboxError(f"{self.model._meta.label}.bulk_create with conflicts handling "
                              "cannot be published; create rows one by one or without it")
        with transaction.atomic(using=self.db):
            created = super().bulk_create(objs, *args, **kwargs)
            if any(o.pk is None for o in created):
                raise OutboxError(f"{self.model._meta.label}.bulk_create returned rows "
                                  "without keys; this database cannot be published from")
            record_rows(self.model, created, "created")
            return created

    # bulk_update needs no override: Django implements it with ``filter().update()`` on this
    # queryset class, so each batch is published by ``update`` above.


OutboxManager = models.Manager.from_queryset(OutboxQuerySet)


class OutboxModel(models.Model):
    """Abstract base: ``save`` publishes in the same transaction as the write."""

    objects = OutboxManager()

    class Meta:
        abstract = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        with transaction.atomic(using=kwargs.get("using")):
            adding = self._state.adding
            super().save(*args, **kwargs)
            record(self, "created" if adding else "updated")
