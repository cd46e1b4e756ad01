"""Real-code patterns: models in module-level if/try/with; a paginator page; a swappable
user reference; a generic relation."""
from django.conf import settings
from django.contrib.contenttypes.fields import GenericForeignKey, GenericRelation
from django.core.paginator import Page
from django.db import models


class PostPage(Page):  # django.core.paginator.Page: not a model
    pass


if getattr(settings, "BLOG_SWAPPABLE", False):
    class Post(models.Model):
        title = models.CharField(max_length=100)
        author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
        comments = GenericRelation("weblog.Comment")
else:
    class Post(models.Model):  # noqa: F811 - the framework's default, as Django sees it
        title = models.CharField(max_length=100)
        author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
        comments = GenericRelation("weblog.Comment")

try:
    from thirdparty import Taggable  # noqa: F401
except ImportError:
    class Tag(models.Model):
        name = models.CharField(max_length=20)
        post = models.ForeignKey(Post, on_delete=models.CASCADE)


class Comment(models.Model):
    body = models.TextField()
    post = models.ForeignKey(Post, on_delete=models.CASCADE)
    content_type = models.ForeignKey("contenttypes.ContentType", on_delete=models.CASCADE)
    object_id = models.PositiveIntegerField()
    target = GenericForeignKey("content_type", "object_id")


class Draft(Post):
    class Meta:
        proxy = True


class Stamped(models.Model):
    created = models.DateTimeField()

    class Meta:
        abstract = True
