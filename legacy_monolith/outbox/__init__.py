"""The transactional outbox of the catalog, and the read-only catalog copy after cutover.

Added for the extraction of the catalog service (docs/data-sync.md). Every create, update
and delete of a catalog row writes an ``OutboxEvent`` in the same database transaction;
``strangler relay`` delivers them to the service. After cutover the direction reverses:
the service publishes, and ``consumer`` keeps ``CatalogProductCopy`` (name, price) for the
ordering code that stays here.
"""
