from django.db import models

__all__ = ["Thread", "Reply"]


class Thread(models.Model):
    title = models.CharField(max_length=100)


class Reply(models.Model):
    thread = models.ForeignKey(Thread, on_delete=models.CASCADE)


class Hidden(models.Model):  # not in __all__: a star import does not bring it
    note = models.TextField()
