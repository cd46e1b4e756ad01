"""The `notifications` app of the legacy shop."""
