"""Benchmarks of the shadow side: comparator throughput, noise filter quality, primary latency."""
