from django.db import models


class Box[T](models.Model):
    label = models.CharField(max_length=10)
    owner = models.ForeignKey("kernel.Member", on_delete=models.CASCADE)

    def describe(self) -> str:
        return f"{"box" + self.label}"


type BoxId = int
