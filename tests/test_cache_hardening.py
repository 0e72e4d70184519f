"""Issue 14's cache items, each a regression test that failed on the code before the fix (see note-cache.md).

(3) cached answers are private copies, never shared mutable objects; (10) MemoryCache has a byte budget, on by
default; (11) a TTL Redis cannot honour is a named ConfigError; (13) values read from Redis get the checks a tier's
answer gets; (14) a stalled Redis costs a request at most one socket timeout (real redis-server, SIGSTOP). Plus
``Prediction.usage`` in the envelope (schema 3; schema 2 still decodes).
"""

from __future__ import annotations

import logging
import math
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import redis
from tests.contracts.cache_contract import prediction
from tests.redis_server import RedisServer

from tierswitch.cache import MemoryCache, RedisCache, RedisSingleFlight
from tierswitch.cache.codec import encode
from tierswitch.config import cache_from_config
from tierswitch.errors import ConfigError
from tierswitch.policies import Fixed
from tierswitch.router import Router
from tierswitch.serialization import pack
from tierswitch.tiers import CallableTier
from tierswitch.types import Prediction, Usage


@pytest.fixture
def rcache(redis_url: str, redis_prefix: str) -> Iterator[RedisCache]:
    c = RedisCache(redis_url, namespace=redis_prefix, socket_timeout_s=5, connect_timeout_s=5)
    yield c
    c.close()


# -- (3) frozen outputs ---------------------------------------------------------------------------------------------
def test_mutating_what_was_stored_or_served_never_changes_later_hits() -> None:
    cache = MemoryCache()
    output = {"labels": ["a", "b"], "scores": [0.5, 0.5], "meta": ({"k": [1]},)}
    cache.set("d", prediction(output, confidence=None))
    output["labels"].append("written after set")  # the caller (or the model) keeps using its object
    output["meta"][0]["k"].append(2)
    hit = cache.get("full", "1", "d")
    assert hit is not None and hit.output == {"labels": ["a", "b"], "scores": [0.5, 0.5], "meta": ({"k": [1]},)}
    hit.output["labels"].clear()  # a caller mutating the answer it was served
    hit.output["meta"][0]["k"].clear()
    again = cache.lookup("d", [("full", "1")])
    assert again is not None and again.output["labels"] == ["a", "b"] and again.output["meta"][0]["k"] == [1]


def test_a_model_reusing_its_output_buffer_does_not_change_cached_answers() -> None:
    buffer = np.zeros(4)

    def model(x: str) -> np.ndarray:
        buffer[:] = len(x)  # writes into the same array every call, as some inference runtimes do
        return buffer

    router = Router([CallableTier("full", model)], Fixed("full"), cache=MemoryCache())
    first = router("abc")
    router("a much longer input")  # overwrites the buffer
    hit = router("abc")
    assert hit.cached and hit.output.tolist() == [3.0] * 4
    assert not hit.output.flags.writeable
    with pytest.raises(ValueError):
        hit.output.setflags(write=True)  # a view over immutable bytes: cannot be made writable again
    del first


def test_a_caller_mutating_a_routed_list_output_does_not_change_later_hits() -> None:
    router = Router([CallableTier("full", lambda x: [x, "label"])], Fixed("full"), cache=MemoryCache())
    router("q").output.append("mine")
    served = router("q")
    assert served.cached and served.output == ["q", "label"]
    served.output.append("mine too")
    assert router("q").output == ["q", "label"]


class Box:
    def __init__(self, items: list[int]) -> None:
        self.items = items


def test_served_copies_keep_every_type_the_caller_stored() -> None:
    cache = MemoryCache()
    output = {"t": (1, [2, 3]), "s": {4, 5}, "n": np.int64(7), "a": np.arange(3), "f": [0.5, 1.5], 9: "int key",
              "box": Box([1])}
    cache.set("d", prediction(output, confidence=None))
    output["box"].items.append(2)
    got = cache.get("full", "1", "d").output  # type: ignore[union-attr]
    assert type(got["t"]) is tuple and type(got["t"][1]) is list and got["t"] == (1, [2, 3])
    assert got["s"] == {4, 5} and type(got["n"]) is np.int64 and got[9] == "int key"
    assert type(got["f"]) is list and got["f"] == [0.5, 1.5] and got["a"].tolist() == [0, 1, 2]
    assert got["box"].items == [1] and got["box"] is not cache.get("full", "1", "d").output["box"]  # type: ignore[union-attr]


def test_an_output_nested_too_deep_is_not_cached_and_counted() -> None:
    deep: list[object] = []
    for _ in range(100):
        deep = [deep]
    cache = MemoryCache()
    assert cache.set("d", prediction(deep, confidence=None)) is False
    assert cache.stats.tiers["full"].rejected == 1 and len(cache) == 0


def test_immutable_outputs_are_shared_without_copying() -> None:
    cache = MemoryCache()
    label = "card_arrival" * 3
    cache.set("d", prediction(label))
    assert cache.get("full", "1", "d").output is label  # type: ignore[union-attr]


# -- (10) the byte budget -------------------------------------------------------------------------------------------
def test_memory_cache_bounds_bytes_not_only_entries() -> None:
    mb = 1 << 20
    cache = MemoryCache(max_bytes=10 * mb)
    for i in range(25):
        assert cache.set(f"d{i}", prediction(np.full(mb // 8, float(i)), confidence=None))
    assert cache.bytes <= 10 * mb and len(cache) <= 10
    assert cache.stats.evictions == 25 - len(cache)
    assert cache.get("full", "1", "d24") is not None and cache.get("full", "1", "d0") is None  # LRU order
    assert cache.set("big", prediction(np.zeros(11 * mb // 8), confidence=None)) is False  # over the whole budget
    assert cache.stats.tiers["full"].rejected == 1
    cache.clear()
    assert cache.bytes == 0


def test_the_byte_budget_is_on_by_default_and_validated() -> None:
    assert MemoryCache().max_bytes == 256 << 20
    assert MemoryCache(max_bytes=None).max_bytes is None
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ConfigError, match="max_bytes"):
            MemoryCache(max_bytes=bad)  # type: ignore[arg-type]


def test_overwrites_and_deletes_keep_the_byte_count_exact() -> None:
    cache = MemoryCache()
    cache.set("d", prediction("x" * 1000))
    one = cache.bytes
    cache.set("d", prediction("x" * 1000))
    assert cache.bytes == one
    cache.delete("full", "1", "d")
    assert cache.bytes == 0


# -- (11) TTLs Redis cannot honour ----------------------------------------------------------------------------------
@pytest.mark.parametrize("ttl", [math.inf, 1e300, 1e16, math.nan, 0.0, -1, "60"])
def test_a_ttl_redis_cannot_honour_is_a_named_config_error(redis_url: str, ttl: Any) -> None:
    with pytest.raises(ConfigError, match=r"cache\.ttl_s"):
        RedisCache(redis_url, ttl_s=ttl)
    with pytest.raises(ConfigError, match=r"cache\.ttl_s"):
        MemoryCache(ttl_s=ttl)
    with pytest.raises(ConfigError, match=r"cache\.ttl_s"):
        cache_from_config({"kind": "redis", "url": redis_url, "ttl_s": ttl})


def test_the_longest_allowed_ttl_is_stored(rcache: RedisCache, redis_url: str, redis_prefix: str) -> None:
    cache = RedisCache(redis_url, namespace=redis_prefix, ttl_s=1e15)
    assert cache.set("d", prediction()) and cache.get("full", "1", "d") is not None
    cache.close()


# -- (13) read-side checks -------------------------------------------------------------------------------------------
def unchecked(output: Any = "yes", *, probs: Any = None, confidence: float | None = 0.9) -> Prediction:
    """A prediction no tier would return (the constructor does not check): what a poisoned store can hold."""
    if probs is not None:
        probs = np.asarray(probs, dtype=np.float64)
    return Prediction(output, "full", "1", 3.0, 0.001, probs, confidence)


@pytest.mark.parametrize(
    "bad",
    [
        unchecked(float("nan")),
        unchecked(np.array([1.0, np.inf])),
        unchecked(confidence=1.5),
        unchecked(confidence=-0.1),
        unchecked(probs=[5.0, 5.0]),  # logits, not probabilities
        unchecked(probs=[0.5, float("nan")]),
        unchecked(probs=[1.5, -0.5]),
        unchecked("x" * (2 << 20)),  # over max_value_bytes (1 MB): writes refuse it, so must reads
    ],
    ids=["nan-output", "inf-array", "confidence-1.5", "confidence-neg", "logits", "nan-probs", "negative-probs",
         "2MB-output"],
)
def test_well_formed_but_unfit_values_are_refused_on_read(
    rcache: RedisCache, bad: Prediction, caplog: pytest.LogCaptureFixture
) -> None:
    key = rcache.key("full", "1", "d")
    rcache.client.set(key, encode(bad, time.time()))  # written by someone who skipped the checks
    with caplog.at_level(logging.WARNING, logger="tierswitch.cache"):
        assert rcache.get("full", "1", "d") is None
    assert rcache.stats.tiers["full"].corrupt == 1 and rcache.stats.misses == 1
    assert rcache.client.exists(key) == 0, "a refused value is deleted"
    assert "corrupt" in caplog.text
    assert rcache.set("d", bad) is False, "what reads refuse, writes refuse too"


def test_the_async_read_path_refuses_them_too(rcache: RedisCache) -> None:
    import asyncio

    rcache.client.set(rcache.key("full", "1", "d"), encode(unchecked(confidence=7.0), time.time()))

    async def main() -> Prediction | None:
        try:
            return await rcache.aget("full", "1", "d")
        finally:
            await rcache.aclose()

    assert asyncio.run(main()) is None and rcache.stats.tiers["full"].corrupt == 1


# -- usage in the envelope -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_usage_round_trips(backend: str, request: pytest.FixtureRequest) -> None:
    cache = MemoryCache() if backend == "memory" else request.getfixturevalue("rcache")
    p = Prediction("The answer is 4.", "full", "1", 0.002, 0.3, None, None, Usage(12, 34))
    assert cache.set("d", p)
    hit = cache.get("full", "1", "d")
    assert hit is not None and hit.usage == Usage(12, 34)


def test_a_schema_2_envelope_still_decodes_without_usage(rcache: RedisCache) -> None:
    v2 = pack([2, "old", None, 0.75, 1.0, "full", "1", 0.01, time.time(), None, None])
    rcache.client.set(rcache.key("full", "1", "d"), v2)
    hit = rcache.get("full", "1", "d")
    assert hit is not None and (hit.output, hit.confidence, hit.usage) == ("old", 0.75, None)


# -- (14) a stalled Redis costs one socket timeout -------------------------------------------------------------------
TIMEOUT_S = 0.2


@pytest.fixture
def stalled() -> Iterator[tuple[RedisServer, RedisCache]]:
    with RedisServer() as server:
        cache = RedisCache(server.url, namespace="stall", socket_timeout_s=TIMEOUT_S, connect_timeout_s=TIMEOUT_S)
        cache.set("warm", prediction())  # connections open before the stall, as in a serving process
        assert cache.get("full", "1", "warm") is not None
        assert server.pid is not None
        os.kill(server.pid, signal.SIGSTOP)  # alive, accepting, silent
        try:
            yield server, cache
        finally:
            os.kill(server.pid, signal.SIGCONT)
            cache.close()


def test_a_stalled_redis_costs_a_request_one_socket_timeout(stalled: tuple[RedisServer, RedisCache]) -> None:
    _, cache = stalled
    flight = RedisSingleFlight(cache)
    router = Router([CallableTier("full", lambda x: f"answer:{x}")], Fixed("full"), cache=cache,
                    single_flight=flight)
    started = time.perf_counter()
    out = router("a question nobody asked yet")  # lookup, lock, set: three Redis calls on the old code
    wall = time.perf_counter() - started
    assert out.output == "answer:a question nobody asked yet" and not out.cached
    assert TIMEOUT_S * 0.9 < wall < TIMEOUT_S * 1.6, f"{wall:.3f}s for one request; socket timeout {TIMEOUT_S}s"
    assert cache.breaker.trips == 1 and cache.breaker.skipped == 2  # the lock and the set skipped Redis
    started = time.perf_counter()
    router("another one")  # inside the back-off window: Redis is not asked at all
    assert time.perf_counter() - started < TIMEOUT_S / 2


def test_a_stalled_redis_costs_an_async_request_one_socket_timeout(
    stalled: tuple[RedisServer, RedisCache],
) -> None:
    import asyncio

    _, cache = stalled
    flight = RedisSingleFlight(cache)

    async def request(digest: str) -> Any:
        hit = await cache.alookup(digest, [("full", "1")])
        if hit is not None:
            return hit

        async def compute() -> Prediction:
            p = prediction(f"answer:{digest}")
            await cache.aset(digest, p)
            return p

        return (await flight.ado_outcome(digest, compute, lambda: cache.alookup(digest, [("full", "1")]))).value

    async def main() -> float:
        started = time.perf_counter()
        try:
            out = await request("fresh")
        finally:
            await cache.aclose()
        assert out.output == "answer:fresh"
        return time.perf_counter() - started

    wall = asyncio.run(main())
    assert TIMEOUT_S * 0.9 < wall < TIMEOUT_S * 1.6, f"{wall:.3f}s; socket timeout {TIMEOUT_S}s"
    assert cache.breaker.trips == 1 and cache.breaker.skipped == 2  # the lock and the set skipped Redis


def test_after_the_window_one_probe_finds_redis_back(stalled: tuple[RedisServer, RedisCache]) -> None:
    server, cache = stalled
    assert cache.get("full", "1", "warm") is None and cache.breaker.is_open
    assert server.pid is not None
    os.kill(server.pid, signal.SIGCONT)
    cache.breaker.open_until = 0.0  # the window is over (the breaker's own clock is real time here)
    assert cache.get("full", "1", "warm") is not None and not cache.breaker.is_open


def test_a_refused_connection_still_needs_the_threshold(redis_prefix: str) -> None:
    from tests.redis_server import free_port

    cache = RedisCache(f"redis://127.0.0.1:{free_port()}/0", namespace=redis_prefix, failure_threshold=3)
    cache.get("full", "1", "d")
    assert not cache.breaker.is_open  # a fast failure: only a timeout trips at once
    cache.get("full", "1", "d")
    cache.get("full", "1", "d")
    assert cache.breaker.is_open
    cache.close()


def test_redis_errors_are_client_errors_not_ours() -> None:
    assert issubclass(redis.TimeoutError, redis.RedisError)  # what the mapping relies on


def test_a_stalled_redis_costs_a_routed_acall_one_socket_timeout(stalled: tuple[RedisServer, RedisCache]) -> None:
    import asyncio

    _, cache = stalled

    async def full(x: str) -> str:
        return f"answer:{x}"

    router = Router([CallableTier("full", full)], Fixed("full"), cache=cache, single_flight=RedisSingleFlight(cache))

    async def main() -> tuple[Any, float]:
        started = time.perf_counter()
        try:
            out = await router.acall("an async question")  # alookup, lock, aset through redis.asyncio
        finally:
            await cache.aclose()
        return out, time.perf_counter() - started

    out, wall = asyncio.run(main())
    assert out.output == "answer:an async question" and not out.cached
    assert TIMEOUT_S * 0.9 < wall < TIMEOUT_S * 1.6, f"{wall:.3f}s for one acall; socket timeout {TIMEOUT_S}s"
    assert cache.breaker.trips == 1
