"""Internals of the router: batch routing and counters."""
