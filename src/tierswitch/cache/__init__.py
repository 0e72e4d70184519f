"""Result caches: one contract (``Cache``), an in-memory default and a Redis backend for fleets.

``RedisCache`` imports redis-py only when one is built (and connects on its first command), so importing this
package stays cheap.
"""

from tierswitch.cache.base import Cache, CacheKey, CacheStats, TierStats
from tierswitch.cache.memory import MemoryCache
from tierswitch.cache.redis import RedisCache
from tierswitch.cache.redis_flight import RedisSingleFlight
from tierswitch.cache.singleflight import Outcome, SingleFlight

__all__ = [
    "Cache",
    "CacheKey",
    "CacheStats",
    "MemoryCache",
    "Outcome",
    "RedisCache",
    "RedisSingleFlight",
    "SingleFlight",
    "TierStats",
]
