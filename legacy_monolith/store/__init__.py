"""The `store` app of the legacy shop."""
