"""Benchmarks of ``strangler analyze``: run ``python -m bench.analysis`` (``--quick`` for CI)."""
