"""The router's flow: cache, capability filter, policy, cascade, fallback, batch, async, hooks, decorator."""

from __future__ import annotations

import asyncio
import itertools
import math
import sys
from collections import Counter

import numpy as np
import pytest

from tierswitch import (
    AllTiersFailed,
    CallableTier,
    Capabilities,
    Cascade,
    ComplexityEstimator,
    ConfigError,
    EmptyInput,
    Fixed,
    MemoryCache,
    NoCapableTier,
    Router,
    Threshold,
    tiered,
)


class CountingModel:
    """A deterministic model: answers ``f"{name}:{x}"`` with a fixed confidence; counts its calls."""

    def __init__(self, name: str, confidence: float, fail_on: set[str] | None = None, nan_on: set[str] = frozenset()):
        self.name, self.confidence = name, confidence
        self.fail_on, self.nan_on = fail_on or set(), nan_on
        self.calls: Counter[str] = Counter()

    def __call__(self, x):
        self.calls[str(x)] += 1
        if str(x) in self.fail_on or "*" in self.fail_on:
            raise RuntimeError(f"{self.name} is down")
        if str(x) in self.nan_on:
            return float("nan")
        return f"{self.name}:{x}", np.array([self.confidence, 1 - self.confidence])


def three_tiers(confidences=(0.6, 0.9, 0.99), **kwargs):
    models = [CountingModel(n, c, **kwargs.get(n, {})) for n, c in zip(("base", "distilled", "full"), confidences)]
    tiers = [CallableTier(m.name, m, cost=cost) for m, cost in zip(models, (1.0, 3.0, 10.0))]
    return models, tiers


def test_cascade_escalates_until_confident_and_pays_for_every_call():
    models, tiers = three_tiers()
    router = Router(tiers, Cascade({"base": 0.8, "distilled": 0.8}))
    out = router("hello")
    assert out.output == "distilled:hello" and out.tier == "distilled" and out.cost == pytest.approx(4.0)
    assert [s.kind for s in out.trace] == ["cache_miss", "decide", "call", "escalate", "call", "accept"]
    assert "base confidence 0.600 too low" in out.explain()


def test_cache_hit_returns_the_answer_at_no_cost_without_calling_tiers():
    models, tiers = three_tiers()
    router = Router(tiers, Cascade({"base": 0.8, "distilled": 0.8}))
    first, second = router("q"), router("q")
    assert second.cached and second.cost == 0.0 and second.output == first.output
    assert sum(sum(m.calls.values()) for m in models) == 2
    assert router.cache.stats.hits == 1


def test_version_bump_makes_old_cached_answers_unreachable():
    models, tiers = three_tiers(confidences=(0.6, 0.95, 0.99))
    router = Router(tiers, Cascade({"base": 0.8, "distilled": 0.8}))
    router("q")
    tiers[1].set_version("2")
    again = router("q")
    assert not again.cached and again.tier_version == "2"
    assert models[1].calls["q"] == 2


def test_capability_filter_overrides_the_policy():
    models, tiers = three_tiers()
    tiers[0].capabilities = Capabilities.of(["text"], max_length=4)  # base: at most 4 tokens (16 chars)
    router = Router(tiers, Fixed("base") | Fixed("full"))
    assert router("short").tier == "base"
    long = router("x" * 100)
    assert long.tier == "full" and models[0].calls["x" * 100] == 0


def test_threshold_routes_by_score_and_unknown_policy_tiers_are_refused():
    _, tiers = three_tiers()
    router = Router(tiers, Threshold(["base", "distilled", "full"], [0.4, 0.8]))
    assert router("hi").tier == "base"
    assert router("y" * 4000).tier == "full"
    with pytest.raises(ConfigError, match="unknown tier"):
        Router(tiers, Fixed("nope"))


def test_no_capable_tier_names_what_each_tier_accepts():
    _, tiers = three_tiers()
    for tier in tiers:
        tier.capabilities = Capabilities.of(["text"])
    router = Router(tiers, Fixed("full"))
    with pytest.raises(NoCapableTier, match="base: text"):
        router(np.zeros((8, 8)))
    assert router("still serving").tier == "full"


def test_failing_and_nan_tiers_fall_back_and_the_trace_says_so():
    models, tiers = three_tiers(base={"fail_on": {"a"}}, distilled={"nan_on": {"a"}})
    router = Router(tiers, Cascade({"base": 0.5, "distilled": 0.5}))
    out = router("a")
    assert out.tier == "full"
    kinds = [s.kind for s in out.trace]
    assert kinds.count("failure") == 2 and kinds.count("fallback") == 2
    assert "base is down" in out.explain() and "NaN" in out.explain() or "nan" in out.explain()
    assert router.stats.snapshot()["fallbacks"] == 2
    assert router.cache.get("base", "1", out.digest) is None  # nothing from a failed tier was cached


def test_all_tiers_failing_raises_and_caches_nothing():
    models, tiers = three_tiers(base={"fail_on": {"*"}}, distilled={"fail_on": {"*"}}, full={"fail_on": {"*"}})
    router = Router(tiers, Fixed("base"))
    with pytest.raises(AllTiersFailed) as info:
        router("z")
    assert [f.tier for f in info.value.failures] == ["base", "distilled", "full"]
    assert len(router.cache) == 0


def test_fallback_can_be_switched_off():
    _, tiers = three_tiers(base={"fail_on": {"*"}})
    router = Router(tiers, Fixed("base"), fallback=False)
    with pytest.raises(AllTiersFailed):
        router("z")


def test_failure_of_the_strongest_tier_degrades_to_a_cheaper_one():
    _, tiers = three_tiers(full={"fail_on": {"*"}})
    out = Router(tiers, Fixed("full"))("z")
    assert out.tier == "distilled"


def test_invalid_input_is_a_named_error_and_the_router_keeps_serving():
    _, tiers = three_tiers()
    router = Router(tiers, Fixed("base"))
    for bad in (None, ""):
        with pytest.raises(EmptyInput):
            router(bad)
    assert router("fine").tier == "base"


def test_probe_supplies_uncertainty_and_its_answer_is_reused():
    models, tiers = three_tiers(confidences=(0.95, 0.9, 0.99))
    estimator = ComplexityEstimator(length_weight=0.0, uncertainty_weight=1.0, probe="base")
    router = Router(tiers, Threshold(["base", "full"], [0.5]), estimator=estimator)
    out = router("q")
    assert out.tier == "base" and out.score == pytest.approx(0.05)
    assert models[0].calls["q"] == 1 and out.cost == pytest.approx(1.0)
    assert [s.kind for s in out.trace][:2] == ["cache_miss", "probe"]


def test_batch_groups_by_tier_and_matches_single_calls():
    counts = Counter()

    def batched(name, confidence):
        def fn(xs):
            counts[name] += 1
            return [(f"{name}:{x}", np.array([confidence(x), 1 - confidence(x)])) for x in xs]
        return fn

    tiers = [
        CallableTier("base", batched("base", lambda x: 0.9 if len(x) < 3 else 0.5), batched=True, cost=1.0),
        CallableTier("full", batched("full", lambda x: 0.99), batched=True, cost=10.0),
    ]
    xs = ["a", "bb", "cccc", "ddddd", "a"]
    router = Router(tiers, Cascade({"base": 0.8}))
    results = router.batch(xs)
    assert [r.output for r in results] == ["base:a", "base:bb", "full:cccc", "full:ddddd", "base:a"]
    assert counts == {"base": 1, "full": 1}
    single = Router(tiers, Cascade({"base": 0.8}), cache=None)
    for x, r in zip(xs, results):
        s = single(x)
        assert (s.output, s.tier, s.cost) == (r.output, r.tier, r.cost)
    before = dict(counts)
    again = router.batch(xs)
    assert all(r.cached for r in again) and counts == before


def test_acall_routes_like_the_sync_core():
    _, tiers = three_tiers()
    router = Router(tiers, Cascade({"base": 0.8, "distilled": 0.8}))

    async def main():
        return await asyncio.gather(*(router.acall(f"q{i}") for i in range(10)))

    results = asyncio.run(main())
    assert {r.tier for r in results} == {"distilled"} and len({r.request_id for r in results}) == 10


def test_hooks_get_a_record_per_request_and_a_failing_hook_is_harmless():
    _, tiers = three_tiers()
    records = []
    router = Router(tiers, Cascade({"base": 0.8, "distilled": 0.8}), hooks=[records.append])
    router.add_hook(lambda record: 1 / 0)
    router("q")
    router("q")
    assert [r.cached for r in records] == [False, True]
    first = records[0]
    assert set(first.predictions) == {"base", "distilled"} and first.tier == "distilled"
    assert first.request.payload == "q" and first.features.chars == 1 and math.isfinite(first.score)
    assert first.cache_stats["misses"] >= 1
    assert router.stats.snapshot()["hook_errors"] == 2


def test_a_hook_record_survives_another_thread_adding_a_tier_to_the_cache_stats_mid_read():
    """A decision record sums the cache's per-tier counters while other threads serve: a thread's first hit or miss
    of a tier adds a key to them. The trace function below plays that thread at a bytecode boundary of the sum,
    deterministically; reading the live dict there raised "dictionary changed size" and failed the request."""
    from tierswitch.cache import base as cache_base

    cache, records = MemoryCache(), []
    router = Router([CallableTier("base", lambda x: "b")], Fixed("base"), cache=cache, hooks=[records.append])
    added = itertools.count()

    def concurrent_thread(frame, event, arg):
        if event == "line":
            cache.stats.tiers[f"other{next(added)}"]  # what another thread's first lookup of a new tier does
        return concurrent_thread

    def tracer(frame, event, arg):
        code = frame.f_code
        inside = code.co_filename == cache_base.__file__ and code.co_name in ("total", "snapshot", "<genexpr>",
                                                                               "<dictcomp>")
        return concurrent_thread if inside else None

    sys.settrace(tracer)
    try:
        out = router("q")
        snapshot = cache.stats.snapshot()
    finally:
        sys.settrace(None)
    assert out.output == "b" and len(records) == 1 and records[0].cache_stats["misses"] == 1
    assert next(added) > 1 and snapshot["misses"] == 1  # the other thread did add tiers during the reads


def test_tiered_decorator_keeps_call_sites_working():
    base = CountingModel("base", 0.95)

    @tiered(base=base)
    def classify(text):
        return f"full:{text}", np.array([0.99, 0.01])

    assert classify("hello") == "base:hello"
    assert classify.router.tier_order == ("base", "full")
    assert classify.__name__ == "classify"


def test_memory_cache_is_bounded_and_expires_with_an_injected_clock():
    now = [0.0]
    cache = MemoryCache(max_entries=2, ttl_s=10, clock=lambda: now[0])
    _, tiers = three_tiers()
    router = Router(tiers, Fixed("base"), cache=cache)
    for x in ("a", "b", "c"):
        router(x)
    assert len(cache) == 2 and cache.stats.evictions == 1
    assert router("c").cached
    now[0] = 11.0
    assert not router("c").cached
