"""Result caches: one contract (``Cache``), an in-memory default and a Redis backend for fleets."""

from tierswitch.cache.base import Cache, CacheKey, CacheStats, TierStats
from tierswitch.cache.memory import MemoryCache

__all__ = ["Cache", "CacheKey", "CacheStats", "MemoryCache", "TierStats"]
