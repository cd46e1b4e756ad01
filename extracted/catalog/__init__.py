"""The extracted catalog service: products, categories, brands, tags, images, prices.

A Django + DRF project (settings ``extracted.catalog.settings``, app label ``catalog``) with
its own database. It serves the same API contract as the monolith's catalog endpoints and
keeps its data in step by applying outbox events (see docs/data-sync.md). It never imports
``legacy_monolith`` and never reads another context's tables.
"""
