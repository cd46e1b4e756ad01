"""``GET /static/...``: the installed apps' static files (the Swagger UI's assets).

The shop has no separate static server, and the Swagger UI must work offline, so its
assets (drf-spectacular-sidecar) are served by the app itself. Only files that Django's
finders locate inside an installed app's ``static/`` folder are served; any other path,
``..`` included, is a 404.
"""

from __future__ import annotations

from django.contrib.staticfiles.views import serve
from django.core.exceptions import SuspiciousFileOperation
from django.http import Http404, HttpRequest, HttpResponseBase


def static_asset(request: HttpRequest, path: str) -> HttpResponseBase:
    """The asset at ``path``, or 404 (also for a path that escapes the static folders)."""
    try:
        return serve(request, path, insecure=True)
    except SuspiciousFileOperation:
        raise Http404(path) from None
