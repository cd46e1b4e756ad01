"""Reporting: raw SQL across half the schema (a tangle on purpose, see docs/tangles.md)."""
