"""The `common` app of the legacy shop."""
