"""The Redis cache on loopback: a router hit against a raw GET, batch reads, and the codec against JSON.

    python -m pytest benchmarks/bench_cache.py --benchmark-only --benchmark-group-by=group

Reads REDIS_URL (default redis://127.0.0.1:6379/15) and works under a unique namespace that it purges afterwards.
Ratios (p50 against p50 in the same run):
- "redis hit": router(x) served from RedisCache vs a raw redis-py GET of the very bytes it reads (target <= 1.25x);
- "redis batch 64": cache.get_many of 64 keys vs 64 single GETs (target >= 10x faster);
- "codec": msgpack envelope encode+decode of a typical result (77 class probabilities) vs json of the same data.
"""

from __future__ import annotations

import json
import os
import statistics
import time
import uuid
from collections.abc import Iterator

import numpy as np
import pytest

from tierswitch import CallableTier, Cascade, Router
from tierswitch.cache.codec import decode, encode
from tierswitch.cache.redis import RedisCache
from tierswitch.types import Prediction

ROUNDS = 5_000
PROBS = np.random.default_rng(0).dirichlet(np.ones(77))  # banking77-sized class probabilities
PROBS.setflags(write=False)
TEXT = ("I still have not received my new card, can you tell me when it will arrive? " * 3)[:200]


def typical() -> Prediction:
    return Prediction("card_arrival", "full", "1", 10.0, 0.0123, PROBS, float(PROBS.max()))


@pytest.fixture(scope="module")
def cache() -> Iterator[RedisCache]:
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")
    c = RedisCache(url, namespace=f"bench:{uuid.uuid4().hex[:10]}")
    yield c
    c.purge()
    c.close()


@pytest.fixture(scope="module")
def router(cache: RedisCache) -> Router:
    def model(x: str) -> tuple[str, np.ndarray]:
        return "card_arrival", PROBS

    tiers = [CallableTier(name, model, cost=cost) for name, cost in (("base", 1.0), ("distilled", 3.0),
                                                                      ("full", 10.0))]
    r = Router(tiers, Cascade({"base": 0.99, "distilled": 0.99}), cache=cache)
    assert not r(TEXT).cached and r(TEXT).cached
    return r


def record_ratio(benchmark, name: str, baseline_s: list[float]) -> None:
    """Store the baseline's p50 (µs) and p50(benchmarked) / p50(baseline) in the benchmark's extra_info."""
    base = statistics.median(baseline_s)
    mine = benchmark.stats.stats.median
    benchmark.extra_info[f"{name}_p50_us"] = round(base * 1e6, 2)
    benchmark.extra_info[f"p50_over_{name}"] = round(mine / base, 3)


def test_raw_get_same_bytes(benchmark, cache: RedisCache, router: Router) -> None:
    benchmark.group = "redis hit"
    hit = router(TEXT)
    key = cache.key(hit.tier, hit.tier_version, hit.digest)
    client = cache.client
    data = benchmark.pedantic(client.get, args=(key,), rounds=ROUNDS, iterations=1, warmup_rounds=200)
    assert decode(data)[0].output == "card_arrival"


def test_router_hit(benchmark, cache: RedisCache, router: Router) -> None:
    """Each timed router hit is preceded by one raw GET of the same bytes, timed by hand in the untimed setup, so
    both medians come from the same moments of a shared, noisy machine; their ratio goes into extra_info."""
    benchmark.group = "redis hit"
    hit = router(TEXT)
    key, client = cache.key(hit.tier, hit.tier_version, hit.digest), cache.client
    raw_times: list[float] = []

    def raw_get_first() -> None:
        started = time.perf_counter()
        client.get(key)
        raw_times.append(time.perf_counter() - started)

    result = benchmark.pedantic(router, args=(TEXT,), setup=raw_get_first, rounds=ROUNDS, iterations=1,
                                warmup_rounds=200)
    assert result.cached and result.output == "card_arrival"
    record_ratio(benchmark, "raw_get", raw_times)


def test_cache_get(benchmark, cache: RedisCache, router: Router) -> None:
    benchmark.group = "redis hit"
    hit = router(TEXT)
    got = benchmark.pedantic(cache.get, args=(hit.tier, hit.tier_version, hit.digest), rounds=ROUNDS,
                             iterations=1, warmup_rounds=200)
    assert got is not None


@pytest.fixture(scope="module")
def keys64(cache: RedisCache) -> list[tuple[str, str, str]]:
    cache.set_many([(f"batch-{i}", typical()) for i in range(64)])
    return [("full", "1", f"batch-{i}") for i in range(64)]


def test_get_many_64(benchmark, cache: RedisCache, keys64: list[tuple[str, str, str]]) -> None:
    """Interleaved like ``test_router_hit``: each timed get_many follows 64 raw single GETs timed by hand."""
    benchmark.group = "redis batch 64"
    client, names = cache.client, [cache.key(*k) for k in keys64]
    singles: list[float] = []

    def singles_first() -> None:
        started = time.perf_counter()
        for name in names:
            client.get(name)
        singles.append(time.perf_counter() - started)

    got = benchmark.pedantic(cache.get_many, args=(keys64,), setup=singles_first, rounds=500, iterations=1,
                             warmup_rounds=20)
    assert all(g is not None for g in got)
    record_ratio(benchmark, "64_single_raw_gets", singles)


def test_64_single_raw_gets(benchmark, cache: RedisCache, keys64: list[tuple[str, str, str]]) -> None:
    benchmark.group = "redis batch 64"
    client, names = cache.client, [cache.key(*k) for k in keys64]

    def one_by_one() -> list[bytes]:
        return [client.get(n) for n in names]

    got = benchmark.pedantic(one_by_one, rounds=200, iterations=1, warmup_rounds=5)
    assert all(g is not None for g in got)


def test_64_single_cache_gets(benchmark, cache: RedisCache, keys64: list[tuple[str, str, str]]) -> None:
    benchmark.group = "redis batch 64"

    def one_by_one() -> list[Prediction | None]:
        return [cache.get(*k) for k in keys64]

    got = benchmark.pedantic(one_by_one, rounds=200, iterations=1, warmup_rounds=5)
    assert all(g is not None for g in got)


def test_codec_msgpack(benchmark) -> None:
    benchmark.group = "codec"
    p = typical()
    out = benchmark.pedantic(lambda: decode(encode(p, 1.7e9)), rounds=ROUNDS, iterations=1, warmup_rounds=200)
    assert out[0].probs.tobytes() == PROBS.tobytes()
    benchmark.extra_info["bytes"] = len(encode(p, 1.7e9))


def test_codec_json(benchmark) -> None:
    benchmark.group = "codec"
    p = typical()

    def dumps() -> bytes:
        return json.dumps({"schema": 1, "output": p.output, "probs": p.probs.tolist(), "confidence": p.confidence,
                           "cost": p.cost, "tier": p.tier, "tier_version": p.tier_version, "latency_s": p.latency_s,
                           "created_at": 1.7e9}).encode()

    def round_trip() -> Prediction:
        d = json.loads(dumps())
        probs = np.asarray(d["probs"], dtype=np.float64)
        return Prediction(d["output"], d["tier"], d["tier_version"], d["cost"], d["latency_s"], probs, d["confidence"])

    out = benchmark.pedantic(round_trip, rounds=ROUNDS, iterations=1, warmup_rounds=200)
    assert np.array_equal(out.probs, PROBS)
    benchmark.extra_info["bytes"] = len(dumps())
