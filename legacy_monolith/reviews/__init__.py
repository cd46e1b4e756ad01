"""The `reviews` app of the legacy shop."""
