"""The `accounts` app of the legacy shop."""
