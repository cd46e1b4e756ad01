from .models import *  # noqa: F403 - the usage signal must see through it


def publish(request, pk):
    post = Post.objects.get(pk=pk)  # noqa: F405
    Comment.objects.filter(post=post).delete()  # noqa: F405
    return post


def everything(request, path):
    from forum.models import Thread

    return Post.objects.filter(title=path), Thread.objects.filter(title=path)  # noqa: F405
