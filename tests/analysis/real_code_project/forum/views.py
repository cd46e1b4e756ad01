from forum.models import *  # noqa: F403


def thread_view(request, pk):
    thread = Thread.objects.get(pk=pk)  # noqa: F405
    return Reply.objects.filter(thread=thread)  # noqa: F405
