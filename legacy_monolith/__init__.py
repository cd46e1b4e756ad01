"""The demo legacy monolith: a Django + DRF online shop, tangled on purpose.

Settings: ``legacy_monolith.settings``. Commands: ``strangler monolith --help``.
Docs: docs/monolith.md (API and JSON shapes), docs/tangles.md, docs/query-log-format.md.
"""
