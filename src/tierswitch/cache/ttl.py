"""The one rule for a cache's ``ttl_s``, shared by every backend."""

from __future__ import annotations

from typing import Any

from tierswitch.errors import ConfigError

__all__ = ["MAX_TTL_S", "MIN_TTL_S", "check_ttl"]

MIN_TTL_S = 0.001
"""Redis expiries have millisecond resolution."""

MAX_TTL_S = 1e15
"""About 31 million years. Redis refuses an expiry past 2**63 ms from now (about 9.2e15 s): a TTL beyond this
would be accepted and then every write refused, a cache that silently never stores; use None for no expiry."""


def check_ttl(ttl_s: Any, field: str = "cache.ttl_s") -> None:
    """Raise ``ConfigError`` unless ``ttl_s`` is None or a number of seconds in [MIN_TTL_S, MAX_TTL_S]."""
    if ttl_s is None:
        return
    if isinstance(ttl_s, bool) or not isinstance(ttl_s, (int, float)):
        raise ConfigError(field, f"must be a number of seconds or None (no expiry), got {type(ttl_s).__name__}")
    if not MIN_TTL_S <= ttl_s <= MAX_TTL_S:  # NaN fails both comparisons
        raise ConfigError(
            field, f"must be between {MIN_TTL_S} and {MAX_TTL_S:g} seconds, got {ttl_s!r}; use None for no expiry"
        )
