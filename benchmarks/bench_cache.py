"""The Redis cache on loopback: a router hit against a raw GET, batch reads, and the codec against JSON.

    python -m pytest benchmarks/bench_cache.py --benchmark-only --benchmark-group-by=group

Reads REDIS_URL (default redis://127.0.0.1:6379/15) and works under a unique namespace that it purges afterwards.
Ratios (p50 against p50 in the same run):
- "async redis hit": cache.aget (redis.asyncio) vs cache.get (sync), interleaved, both timed inside the call;
- "async redis batch 64": aget_many of 64 keys vs 64 awaited single GETs on the same redis.asyncio client;
- "memory hit: frozen outputs": a MemoryCache hit with frozen outputs vs the old shared-object cache vs a msgpack
  decode of the same envelope (the alternative design), per output kind;
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


# -- async paths (redis.asyncio) ---------------------------------------------------------------------------------------
# Each async figure is timed inside the coroutine (perf_counter around the await), so the event loop's own
# run_until_complete cost is not in it; the sync figure it is compared with is timed the same way in the same rounds.
import asyncio  # noqa: E402

from tierswitch.cache.memory import MemoryCache  # noqa: E402


@pytest.fixture(scope="module")
def loop(cache: RedisCache) -> Iterator[asyncio.AbstractEventLoop]:
    lp = asyncio.new_event_loop()
    yield lp
    lp.run_until_complete(cache.aclose())
    lp.close()


def test_async_hit_vs_sync_hit(benchmark, cache: RedisCache, router: Router, loop) -> None:
    """cache.aget (redis.asyncio, pooled) against cache.get (sync, per-thread connection), interleaved."""
    benchmark.group = "async redis hit"
    hit = router(TEXT)
    args = (hit.tier, hit.tier_version, hit.digest)
    key, client = cache.key(*args), cache.client
    sync_times: list[float] = []
    raw_sync: list[float] = []
    raw_async: list[float] = []

    async def one() -> float:
        started = time.perf_counter()
        await cache.async_client().mget([key])
        raw_async.append(time.perf_counter() - started)
        started = time.perf_counter()
        got = await cache.aget(*args)
        took = time.perf_counter() - started
        assert got is not None
        return took

    def sync_first() -> None:
        started = time.perf_counter()
        client.mget([key])
        raw_sync.append(time.perf_counter() - started)
        started = time.perf_counter()
        cache.get(*args)
        sync_times.append(time.perf_counter() - started)

    async_times: list[float] = []
    benchmark.pedantic(lambda: async_times.append(loop.run_until_complete(one())), setup=sync_first,
                       rounds=ROUNDS, iterations=1, warmup_rounds=200)
    a, s = statistics.median(async_times[200:]), statistics.median(sync_times[200:])
    ra, rs = statistics.median(raw_async[200:]), statistics.median(raw_sync[200:])
    benchmark.extra_info.update(async_aget_p50_us=round(a * 1e6, 2), sync_get_p50_us=round(s * 1e6, 2),
                                async_over_sync=round(a / s, 3), raw_async_mget_p50_us=round(ra * 1e6, 2),
                                raw_sync_mget_p50_us=round(rs * 1e6, 2), aget_over_raw_async=round(a / ra, 3),
                                get_over_raw_sync=round(s / rs, 3))


def test_async_get_many_64_vs_64_async_gets(benchmark, cache: RedisCache, keys64, loop) -> None:
    """aget_many of 64 keys (one MGET) against 64 awaited single GETs on the same redis.asyncio client."""
    benchmark.group = "async redis batch 64"
    names = [cache.key(*k) for k in keys64]
    many: list[float] = []
    singles: list[float] = []

    async def both() -> None:
        client = cache.async_client()
        started = time.perf_counter()
        got = await cache.aget_many(keys64)
        many.append(time.perf_counter() - started)
        assert all(g is not None for g in got)
        started = time.perf_counter()
        for name in names:
            await client.get(name)
        singles.append(time.perf_counter() - started)

    benchmark.pedantic(lambda: loop.run_until_complete(both()), rounds=300, iterations=1, warmup_rounds=10)
    m, s = statistics.median(many), statistics.median(singles)
    benchmark.extra_info.update(aget_many_64_p50_us=round(m * 1e6, 1), gets_64_p50_us=round(s * 1e6, 1),
                                speedup=round(s / m, 2))


# -- the cost of frozen outputs on a memory hit --------------------------------------------------------------------
class _SharedOutputs(MemoryCache):
    """The memory cache before issue 14 (3): stores and serves the caller's own object (for comparison only)."""

    def _prepare(self, items):  # type: ignore[no-untyped-def]
        from tierswitch.cache.memory import _Entry

        return [(0, _Entry(0.0, p, 0, False)) for _, p in items]


OUTPUTS = {
    "label": "card_arrival",
    "list10": [float(i) for i in range(10)],
    "dict77": {"label": "card_arrival", "scores": [float(x) for x in PROBS]},
    "array77": np.array(PROBS),
}


@pytest.mark.parametrize("kind", list(OUTPUTS))
def test_memory_hit_frozen_vs_shared(benchmark, kind: str) -> None:
    """A memory lookup hit now (frozen: immutable outputs shared, mutable ones copied per hit) against the old
    shared-object cache and against a msgpack round trip of the envelope (the alternative design), same rounds."""
    benchmark.group = "memory hit: frozen outputs"
    p = Prediction(OUTPUTS[kind], "full", "1", 10.0, 0.0123, PROBS, float(PROBS.max()))
    frozen, shared = MemoryCache(), _SharedOutputs()
    frozen.set("d", p)
    shared.set("d", p)
    env = encode(p, 1.7e9)
    tiers = [("full", "1")]
    old: list[float] = []
    packed: list[float] = []

    def others_first() -> None:
        started = time.perf_counter()
        shared.lookup("d", tiers)
        old.append(time.perf_counter() - started)
        started = time.perf_counter()
        decode(env)
        packed.append(time.perf_counter() - started)

    benchmark.pedantic(frozen.lookup, args=("d", tiers), setup=others_first, rounds=ROUNDS, iterations=1,
                       warmup_rounds=200)
    mine = benchmark.stats.stats.median
    o, m = statistics.median(old), statistics.median(packed)
    benchmark.extra_info.update(shared_p50_us=round(o * 1e6, 2), msgpack_decode_p50_us=round(m * 1e6, 2),
                                frozen_over_shared=round(mine / o, 3),
                                frozen_minus_shared_us=round((mine - o) * 1e6, 2))
