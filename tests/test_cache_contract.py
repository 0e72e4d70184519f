"""The cache contract (tests/contracts/cache_contract.py) against every backend, memory and Redis (for real), through
the sync methods and through the async ones (``ViaAsync``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from tests.contracts.cache_contract import CacheContract, ViaAsync

from tierswitch.cache.base import Cache
from tierswitch.cache.memory import MemoryCache
from tierswitch.cache.redis import RedisCache


@pytest.fixture(params=["memory", "redis", "memory-async", "redis-async"])
def cache_factory(request: pytest.FixtureRequest) -> Iterator[Callable[[], Cache]]:
    wrap: Callable[[Cache], Cache] = ViaAsync if request.param.endswith("-async") else lambda c: c  # type: ignore[assignment]
    if request.param.startswith("memory"):
        yield lambda: wrap(MemoryCache())
        return
    url = request.getfixturevalue("redis_url")
    prefix = request.getfixturevalue("redis_prefix")
    made: list[RedisCache] = []

    def make() -> Cache:
        # a slow reply or connect on a loaded box is no miss (the async variant opens a connection per event loop,
        # 400 of them in the threads test, and one trip of the breaker would fail unrelated asserts)
        cache = RedisCache(url, namespace=prefix, socket_timeout_s=5, connect_timeout_s=5)
        made.append(cache)
        return wrap(cache)

    yield make
    for cache in made:
        cache.close()


class TestCacheContract(CacheContract):
    pass
