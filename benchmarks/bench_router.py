"""Router overhead with trivial tiers: the router's call minus the tier function's own time.

Miss path: every round routes a text never seen before (the cache is asked and misses, then stores the answer).
Hit path: the same text every round. Run:

    python -m pytest benchmarks/bench_router.py --benchmark-only --benchmark-group-by=group

Overhead p50 = median(router call) - median(raw tier call) from the same run.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from tierswitch import CallableTier, Cascade, Router, Threshold

PROBS = np.array([0.95, 0.05])
PROBS.setflags(write=False)


def trivial(x):
    return "label", PROBS


def make_router(kind: str, **options) -> Router:
    tiers = [CallableTier(name, trivial, cost=cost) for name, cost in (("base", 1.0), ("distilled", 3.0),
                                                                         ("full", 10.0))]
    policy = Threshold(["base", "distilled", "full"], [0.9, 0.95]) if kind == "threshold" else Cascade({"base": 0.9})
    return Router(tiers, policy, **options)


def texts(chars: int):
    """An endless stream of distinct texts of exactly ``chars`` characters."""
    for i in itertools.count():
        tag = f"{i:012d}"
        yield ("lorem ipsum dolor sit amet " * (chars // 27 + 1))[: chars - len(tag)] + tag


ROUNDS = 20_000


@pytest.mark.parametrize("chars", [200, 4000])
def test_raw_tier_call(benchmark, chars):
    benchmark.group = f"router overhead {chars} chars"
    stream = texts(chars)
    benchmark.pedantic(trivial, setup=lambda: ((next(stream),), {}), rounds=ROUNDS, iterations=1)


@pytest.mark.parametrize("kind", ["threshold", "cascade"])
@pytest.mark.parametrize("chars", [200, 4000])
def test_router_miss(benchmark, kind, chars):
    benchmark.group = f"router overhead {chars} chars"
    router = make_router(kind)
    stream = texts(chars)
    benchmark.pedantic(router, setup=lambda: ((next(stream),), {}), rounds=ROUNDS, iterations=1)
    assert router.cache.stats.hits == 0 and router.cache.stats.misses > 0


@pytest.mark.parametrize("kind", ["threshold", "cascade"])
@pytest.mark.parametrize("chars", [200, 4000])
def test_router_hit(benchmark, kind, chars):
    benchmark.group = f"router overhead {chars} chars"
    router = make_router(kind)
    text = next(texts(chars))
    router(text)
    result = benchmark.pedantic(router, args=(text,), rounds=ROUNDS, iterations=1)
    assert result.cached


@pytest.mark.parametrize("chars", [200, 4000])
def test_router_miss_without_single_flight(benchmark, chars):
    """The same miss path with in-process single flight switched off, to show what coalescing costs."""
    benchmark.group = f"router overhead {chars} chars"
    router = make_router("threshold", single_flight=None)
    stream = texts(chars)
    benchmark.pedantic(router, setup=lambda: ((next(stream),), {}), rounds=ROUNDS, iterations=1)
    assert router.cache.stats.hits == 0


# -- the floor and the async core --------------------------------------------------------------------------------
def make_floor():
    """A hand-written router with nothing but a dict lookup and a threshold: the floor tierswitch is measured
    against ("tierswitch miss path = N x the floor")."""
    cache: dict[str, object] = {}

    def route(x: str):
        hit = cache.get(x)
        if hit is not None:
            return hit
        label, probs = trivial(x)
        answer = label if probs[0] >= 0.9 else trivial(x)[0]
        cache[x] = answer
        return answer

    return route


@pytest.mark.parametrize("chars", [200, 4000])
def test_floor_miss(benchmark, chars):
    benchmark.group = f"router overhead {chars} chars"
    route = make_floor()
    stream = texts(chars)
    benchmark.pedantic(route, setup=lambda: ((next(stream),), {}), rounds=ROUNDS, iterations=1)


def _async_driver(router: Router, stream):
    """One event loop for the whole benchmark; each round awaits one acall of a new text."""
    import asyncio

    loop = asyncio.new_event_loop()

    def one(x: str):
        return loop.run_until_complete(router.acall(x))

    return one, loop


@pytest.mark.parametrize("inline", [True, False], ids=["inline", "executor"])
def test_router_acall_miss(benchmark, inline):
    """The async core on the same classifier miss path: sync tiers called inline on the loop (``inline=True``) or
    hopped to the executor. Includes run_until_complete's own cost (compare with test_loop_floor)."""
    benchmark.group = "router overhead 200 chars"
    tiers = [CallableTier(name, trivial, cost=cost, inline=inline)
             for name, cost in (("base", 1.0), ("distilled", 3.0), ("full", 10.0))]
    router = Router(tiers, Threshold(["base", "distilled", "full"], [0.9, 0.95]))
    stream = texts(200)
    one, loop = _async_driver(router, stream)
    try:
        benchmark.pedantic(one, setup=lambda: ((next(stream),), {}), rounds=ROUNDS // 4, iterations=1)
    finally:
        loop.close()
        router.close()
    assert router.cache.stats.hits == 0


def test_loop_floor(benchmark):
    """What one run_until_complete of a trivial coroutine costs: the driver's own share of test_router_acall_miss."""
    import asyncio

    benchmark.group = "router overhead 200 chars"
    loop = asyncio.new_event_loop()

    async def nothing(x: str) -> str:
        return x

    try:
        benchmark.pedantic(lambda x: loop.run_until_complete(nothing(x)), setup=lambda: (("x",), {}),
                           rounds=ROUNDS // 4, iterations=1)
    finally:
        loop.close()


def test_acall_throughput_vs_sync(benchmark):
    """64 concurrent acalls over inline classifier tiers against the same 64 calls on the sync core: the ratio of
    the async core's time to the sync core's (reported in extra_info)."""
    import asyncio
    import time

    def fresh() -> Router:
        tiers = [CallableTier(name, trivial, cost=cost, inline=True)
                 for name, cost in (("base", 1.0), ("distilled", 3.0), ("full", 10.0))]
        return Router(tiers, Threshold(["base", "distilled", "full"], [0.9, 0.95]))

    stream = texts(200)
    loop = asyncio.new_event_loop()
    ratios = []

    def once():
        xs = [next(stream) for _ in range(64)]
        sync_router, async_router = fresh(), fresh()
        t0 = time.perf_counter()
        for x in xs:
            sync_router(x)
        t1 = time.perf_counter()

        async def all64():
            return await asyncio.gather(*(async_router.acall(x) for x in xs))

        loop.run_until_complete(all64())
        t2 = time.perf_counter()
        ratios.append((t2 - t1) / (t1 - t0))

    try:
        benchmark.pedantic(once, rounds=200, iterations=1)
    finally:
        loop.close()
    ratios.sort()
    benchmark.extra_info["async_over_sync_median"] = ratios[len(ratios) // 2]
