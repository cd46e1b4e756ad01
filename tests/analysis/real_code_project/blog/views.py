from .models import *  # noqa: F403 - the usage signal must see through it


def publish(request, pk):
    post = Post.objects.get(pk=pk)  # noqa: F405
    Comment.objects.filter(post=post).delete()  # noqa: F405
    return post
