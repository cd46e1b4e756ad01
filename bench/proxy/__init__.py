"""Benchmark of the strangler proxy against nginx and mitmproxy (see ``run.py``)."""
