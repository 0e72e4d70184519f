"""Fault injection with real threads: a tier failing 20% of calls at random and a tier that hangs, under 10,000
concurrent requests. Every request is answered, every failure is followed by a recorded fallback, and no request
waits much longer than the timeout (real wall time per request)."""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from tierswitch import CallableTier, Router, Threshold
from tierswitch.metrics import Registry, RouterMetrics
from tierswitch.reliability import CircuitBreaker, Guarded

TIMEOUT_S = 0.05
HANG_S = 120.0  # beyond the whole test on any machine: the hung calls end only when released at teardown
MARGIN_S = 1.5  # generous: 2 shared cores, 16 client threads, GIL scheduling
N = 10_000


class Flaky:
    """Fails 20% of calls at random (seeded, thread-safe), and counts what it injected."""

    def __init__(self, rate: float, seed: int) -> None:
        self.rng = random.Random(seed)
        self.rate = rate
        self.lock = threading.Lock()
        self.calls = self.failed = 0

    def __call__(self, x: str):
        with self.lock:
            self.calls += 1
            fail = self.rng.random() < self.rate
            self.failed += fail
        if fail:
            raise RuntimeError("injected failure")
        return f"base:{x}", np.array([0.9, 0.1])


class Hang:
    """Every call hangs until released at teardown (HANG_S at most): its four workers stay stuck throughout."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.started = 0

    def __call__(self, x: str):
        with self.lock:
            self.started += 1
        self.release.wait(HANG_S)
        return f"distilled:{x}"


def inputs(n: int, seed: int) -> list[str]:
    """Unique texts of three sizes, so the threshold policy sends about a third to each tier."""
    rng = random.Random(seed)
    sizes = [8, 80, 800]
    return [f"{i}:" + "x" * rng.choice(sizes) for i in range(n)]


def test_flaky_and_hanging_tiers_under_load_every_request_answered_within_the_timeout():
    flaky, hang = Flaky(0.2, seed=1), Hang()
    base = Guarded(CallableTier("base", flaky, cost=1.0))
    distilled = Guarded(CallableTier("distilled", hang, cost=3.0), timeout_s=TIMEOUT_S, workers=4, max_queue=8,
                        breaker=CircuitBreaker(failures=3, window_s=10.0, cooldown_s=0.25))
    full = CallableTier("full", lambda x: (f"full:{x}", np.array([0.1, 0.9])), cost=10.0)
    router = Router([base, distilled, full], Threshold(["base", "distilled", "full"], [0.45, 0.8]), cache=None)
    metrics = RouterMetrics(router, Registry(), name="faults")

    def one(x: str):
        t0 = time.perf_counter()
        routed = router(x)
        return routed, time.perf_counter() - t0

    xs = inputs(N, seed=2)
    try:
        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(one, xs))
    finally:
        hang.release.set()

    # 100% answered, each by a tier that really answered it
    assert len(results) == N
    for x, (routed, _) in zip(xs, results):
        assert routed.tier in ("base", "full") and routed.output == f"{routed.tier}:{x}"

    # every failure recorded and followed by a fallback to the tier that then ran
    failures = {"base": 0, "distilled": 0}
    fallbacks = 0
    for routed, _ in results:
        steps = routed.trace
        for i, step in enumerate(steps):
            if step.kind == "failure":
                failures[step.tier] += 1
                assert steps[i + 1].kind == "fallback", routed.explain()
                fallbacks += 1
    assert failures["base"] == flaky.failed == base.stats["errors"] > 0.15 * flaky.calls
    assert failures["distilled"] == distilled.stats["failures"] > 0
    assert distilled.stats["failures"] == distilled.stats["attempts"] + distilled.stats["circuit_open"]
    stats = router.stats.snapshot()
    assert stats["fallbacks"] == fallbacks == stats["failures"] == sum(failures.values())
    assert stats.get("failed_requests", 0) == 0

    # the hanging tier was cut off three ways: timeouts, a full pool, then the open breaker
    assert distilled.stats["timeouts"] >= 3 and distilled.stats["circuit_open"] > 0
    assert distilled.breaker.opened >= 1 and distilled.pool.snapshot()["threads"] <= 4 and hang.started <= 4

    # latency: real wall time of every request is bounded by the timeout plus a generous margin
    latencies = np.array([lat for _, lat in results])
    assert latencies.max() <= TIMEOUT_S + MARGIN_S, f"max {latencies.max():.3f}s"
    scraped = {(s.name, frozenset(s.labels.items())): s.value
               for fam in text_string_to_metric_families(metrics.registry.render()) for s in fam.samples}
    key = ("tierswitch_tier_failures_total", frozenset({("router", "faults"), ("tier", "distilled"),
                                                        ("kind", "timeouts")}))
    assert scraped[key] == distilled.stats["timeouts"]
    print(f"\n{N} requests: p50 {np.percentile(latencies, 50) * 1e3:.2f} ms, p99 "
          f"{np.percentile(latencies, 99) * 1e3:.2f} ms, max {latencies.max() * 1e3:.1f} ms; base failures "
          f"{failures['base']}, distilled failures {failures['distilled']} ({distilled.stats['timeouts']} timeouts, "
          f"{distilled.stats['saturated']} saturated, {distilled.stats['circuit_open']} circuit open)")
