"""The async core over a real Redis: redis.asyncio cache paths and the fleet's single flight, awaited."""

from __future__ import annotations

import asyncio
from typing import Any

from tierswitch import CallableTier, Fixed, Router
from tierswitch.cache import RedisCache, RedisSingleFlight


def test_concurrent_identical_acalls_across_two_routers_make_one_tier_call(redis_url: str, redis_prefix: str):
    calls = 0
    gate = asyncio.Event()

    async def full(x: str) -> str:
        nonlocal calls
        calls += 1
        await gate.wait()
        return x[::-1]

    def make() -> Router:
        cache = RedisCache(redis_url, namespace=redis_prefix)
        return Router([CallableTier("full", full)], Fixed("full"), cache=cache,
                      single_flight=RedisSingleFlight(cache))

    first, second = make(), make()  # two routers = two members of a fleet sharing one Redis

    async def main() -> list[Any]:
        tasks = [asyncio.create_task(r.acall("shared question")) for r in (first, second) for _ in range(8)]
        while calls == 0:
            await asyncio.sleep(0.001)  # polling a real condition: the leader's tier call has started
        gate.set()
        results = await asyncio.gather(*tasks)
        later = await second.acall("shared question")
        return [*results, later]

    results = asyncio.run(main())
    assert calls == 1
    assert {r.output for r in results} == {"noitseuq derahs"}
    assert sum(not r.cached for r in results) == 1 and results[-1].cached


def test_abatch_reads_and_writes_redis_in_one_round_trip_each(redis_url: str, redis_prefix: str):
    cache = RedisCache(redis_url, namespace=redis_prefix)
    router = Router([CallableTier("full", str.upper, inline=True)], Fixed("full"), cache=cache)
    first = asyncio.run(router.abatch(["a", "b", "c"]))
    assert [r.output for r in first] == ["A", "B", "C"] and not any(r.cached for r in first)
    again = asyncio.run(router.abatch(["a", "b", "d"]))
    assert [r.cached for r in again] == [True, True, False]
    assert router("d").cached  # the async write is visible to the sync core
