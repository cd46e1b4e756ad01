"""The extracted ordering service: carts, checkout, orders and their lines, coupons.

A Django + DRF project (settings ``extracted.ordering.settings``, app label ``ordering``) with
its own database. It serves the monolith's API contract for the cart, checkout, order and
coupon endpoints, keeps in step by applying the monolith's outbox events (the shared
machinery of ``extracted.servicekit``, the ``ordering`` spec of ``extracted/sync/spec.py``),
and talks to other contexts only through their APIs (addresses: the monolith's
``/api/addresses/``) and events (products, availability). It never imports
``legacy_monolith`` (an import-linter contract). See docs/extracted-ordering.md.
"""
