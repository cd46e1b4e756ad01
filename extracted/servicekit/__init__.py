"""What every extracted service shares: settings helpers, auth, pagination, health, and
the machinery that applies a producer's events and backfilled rows (``apply``, ``digests``,
``internal``).

Not a Django app: a service (``extracted.catalog``, ``extracted.ordering``) declares its
context in its settings (``SERVICE_CONTEXT``, the name of a ``ContextSpec`` in
``extracted/sync/spec.py``), subclasses the bookkeeping models of ``servicekit.models`` in
its own app, and mounts ``servicekit.urls.internal_urls()``. The code is written once;
``strangler duplicates`` holds it to that.
"""
