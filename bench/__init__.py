"""Benchmark harness of the Integration Hub (``make bench``, ``make bench-quick``)."""
