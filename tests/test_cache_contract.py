"""The cache contract (tests/contracts/cache_contract.py) against every backend: memory, and Redis for real."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from tests.contracts.cache_contract import CacheContract

from tierswitch.cache.base import Cache
from tierswitch.cache.memory import MemoryCache
from tierswitch.cache.redis import RedisCache


@pytest.fixture(params=["memory", "redis"])
def cache_factory(request: pytest.FixtureRequest) -> Iterator[Callable[[], Cache]]:
    if request.param == "memory":
        yield MemoryCache
        return
    url = request.getfixturevalue("redis_url")
    prefix = request.getfixturevalue("redis_prefix")
    made: list[RedisCache] = []

    def make() -> Cache:
        cache = RedisCache(url, namespace=prefix)
        made.append(cache)
        return cache

    yield make
    for cache in made:
        cache.close()


class TestCacheContract(CacheContract):
    pass
