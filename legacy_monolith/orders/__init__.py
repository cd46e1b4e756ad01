"""The `orders` app of the legacy shop."""
