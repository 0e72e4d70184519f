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
