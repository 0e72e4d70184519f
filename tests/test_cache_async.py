"""The async cache paths: inline for memory, ``redis.asyncio`` for Redis (one pooled client per event loop), with
the sync paths' keys, envelope, statistics, breaker and error mapping. Each test drives its coroutines with
``asyncio.run`` (no pytest plugin)."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from tests.contracts.cache_contract import assert_same, prediction
from tests.redis_server import RedisServer, free_port

from tierswitch.cache import MemoryCache, RedisCache


@pytest.fixture
def rcache(redis_url: str, redis_prefix: str) -> Iterator[RedisCache]:
    c = RedisCache(redis_url, namespace=redis_prefix, socket_timeout_s=5, connect_timeout_s=5)  # not a timeout test
    yield c
    c.close()


def test_memory_async_methods_run_inline_without_suspending() -> None:
    cache = MemoryCache()
    for coro in (cache.aset("d", prediction("x")), cache.aget_many([("full", "1", "d")]),
                 cache.alookup("d", [("full", "1")]), cache.aset_many([("e", prediction("y"))]),
                 cache.adelete("full", "1", "e")):
        with pytest.raises(StopIteration):  # finished on the first step: no await ever yielded to a loop
            coro.send(None)
    assert cache.get("full", "1", "d").output == "x"  # type: ignore[union-attr]
    assert cache.stats.hits == 3 and cache.stats.tiers["full"].sets == 2


def test_sync_and_async_share_keys_and_envelope(rcache: RedisCache) -> None:
    want = prediction("both ways", probs=[0.25, 0.75])

    async def main() -> None:
        try:
            assert await rcache.aset("a", want)
            assert await rcache.aset_many([("b", want), ("c", want), ("d", prediction(float("nan")))]) == 2
            assert_same(await rcache.aget("full", "1", "z-sync"), want)
        finally:
            await rcache.aclose()

    rcache.set("z-sync", want)
    asyncio.run(main())
    for digest in "abc":
        assert_same(rcache.get("full", "1", digest), want)
    assert rcache.stats.tiers["full"].rejected == 1 and rcache.stats.tiers["full"].sets == 4


def test_async_get_many_is_one_mget_and_set_many_one_pipeline() -> None:
    with RedisServer() as server:
        cache = RedisCache(server.url, namespace="async")
        admin = server.client()

        async def main() -> list[Any]:
            try:
                await cache.aset_many([(f"d{i}", prediction(i)) for i in range(64)])
                return await cache.aget_many([("full", "1", f"d{i}") for i in range(64)])
            finally:
                await cache.aclose()

        admin.config_resetstat()
        got = asyncio.run(main())
        assert [g.output for g in got] == list(range(64))
        stats = admin.info("commandstats")
        assert stats["cmdstat_mget"]["calls"] == 1 and "cmdstat_get" not in stats
        assert stats["cmdstat_set"]["calls"] == 64
        admin.close()
        cache.close()


def test_each_event_loop_gets_its_own_client(rcache: RedisCache) -> None:
    rcache.set("d", prediction("x"))

    async def read() -> tuple[Any, Any]:
        return (await rcache.aget("full", "1", "d")), rcache.async_client()

    first, client_a = asyncio.run(read())  # no aclose: the loop ends with its client open
    second, client_b = asyncio.run(read())  # a second loop must not reuse the first loop's client
    assert first is not None and second is not None and client_a is not client_b
    assert rcache.stats.errors == 0
    for _ in range(5):
        asyncio.run(read())
    assert len(rcache._async_clients) == 1, "clients of loops that ended are let go, not kept per loop forever"

    results: list[Any] = []
    ready = threading.Barrier(2)

    def in_thread() -> None:
        async def go() -> None:
            ready.wait(10)
            try:
                results.append(await rcache.aget("full", "1", "d"))
            finally:
                await rcache.aclose()

        asyncio.run(go())

    threads = [threading.Thread(target=in_thread) for _ in range(2)]  # two loops running at the same time
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(results) == 2 and all(r is not None for r in results) and rcache.stats.errors == 0


def test_aclose_closes_the_loops_connections() -> None:
    with RedisServer() as server:
        cache = RedisCache(server.url, namespace="async")
        admin = server.client()
        baseline = len(admin.client_list())

        async def main() -> int:
            await asyncio.gather(*(cache.aget("full", "1", f"d{i}") for i in range(8)))  # pooled: several conns
            opened = len(admin.client_list()) - baseline
            await cache.aclose()
            return opened

        assert asyncio.run(main()) >= 1
        assert len(admin.client_list()) == baseline
        admin.close()
        cache.close()


def test_async_redis_down_is_a_miss_counted_warned_once_and_the_breaker_skips(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cache = RedisCache(f"redis://127.0.0.1:{free_port()}/0", namespace="down", failure_threshold=3)

    async def main() -> list[Any]:
        out = []
        for i in range(50):
            out.append(await cache.alookup(f"d{i}", [("full", "1")]))
            out.append(await cache.aset(f"d{i}", prediction()))
        await cache.aclose()
        return out

    with caplog.at_level(logging.WARNING, logger="tierswitch.cache"):
        assert set(asyncio.run(main())) == {None, False}
    assert cache.stats.errors == 100 and cache.breaker.trips == 1 and cache.breaker.skipped == 97
    assert len([r for r in caplog.records if r.name == "tierswitch.cache"]) == 1, "rate-limited"
    cache.close()


def test_async_readonly_server_refuses_writes_without_tripping() -> None:
    with RedisServer() as server:
        cache = RedisCache(server.url, namespace="ro")
        admin = server.client()
        admin.replicaof("127.0.0.1", str(free_port()))

        async def main() -> tuple[bool, int]:
            try:
                return await cache.aset("e", prediction()), await cache.aset_many([("f", prediction(1)),
                                                                                 ("g", prediction(2))])
            finally:
                await cache.aclose()

        assert asyncio.run(main()) == (False, 0)
        assert cache.stats.errors == 2 and cache.breaker.failures == 0
        admin.replicaof("NO", "ONE")
        admin.close()
        cache.close()


def test_a_passed_in_client_gets_an_async_twin_on_the_same_server(redis_url: str, redis_prefix: str) -> None:
    client = redis.Redis.from_url(redis_url)
    cache = RedisCache(client, namespace=redis_prefix)
    cache.set("d", prediction("shared"))

    async def main() -> Any:
        try:
            return await cache.aget("full", "1", "d")
        finally:
            await cache.aclose()

    assert asyncio.run(main()).output == "shared"
    cache.close()
    assert client.ping()
    client.close()
