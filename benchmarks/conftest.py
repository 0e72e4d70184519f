"""Benchmarks run outside the default test run: ``python -m pytest benchmarks/ --benchmark-only``."""
