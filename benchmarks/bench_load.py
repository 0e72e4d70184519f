"""Load: 20,000 requests at 64-way concurrency through guarded tiers, the Redis cache and background distillation.

    python benchmarks/bench_load.py                      # prints the figures (and --cache memory for comparison)
    python -m pytest benchmarks/bench_load.py --benchmark-only -s --benchmark-group-by=group

Three real tiers on scikit-learn's digits (a pooled logistic regression, a torch student distilled online from the
full tier, a calibrated SVC), behind a Cascade; each tier is ``Guarded`` (timeout, breaker). Requests draw from 8,000
unseen, augmented digits (so about a third are first seen and two thirds can hit the cache). A ``DistillFeeder`` and
a background ``Distiller`` train and promote the student while the load runs. After a 2,000-request warm-up the
20,000 timed requests run in four chunks; RSS is read from /proc after the warm-up and after each chunk (memory flat
after warm-up means the chunks do not keep growing it). Reads REDIS_URL (default redis://127.0.0.1:6379/15) and
works under a unique namespace that it purges afterwards.
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

WARMUP, REQUESTS, CHUNKS, CONCURRENCY, DISTINCT = 2_000, 20_000, 4, 64, 8_000


def rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def _pool_4x4(batch: Any) -> np.ndarray:
    return np.stack(batch).reshape(-1, 4, 2, 4, 2).mean(axis=(2, 4)).reshape(-1, 16)


def _features(x: Any) -> np.ndarray:
    return np.asarray(x, dtype=np.float32).reshape(64)


def build(cache_kind: str, guarded: bool = True, seed: int = 0, max_busy: float = 0.5) -> dict[str, Any]:
    """Models, router, cache, distillation and metrics; nothing is started yet."""
    import torch
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.svm import SVC

    from tierswitch import Cascade, MemoryCache, Router, SklearnTier
    from tierswitch.distill import DistillConfig, Distiller, DistillFeeder, MemoryBuffer
    from tierswitch.distill.student import StudentSpec, student_tier
    from tierswitch.metrics import Registry, RouterMetrics
    from tierswitch.reliability import CircuitBreaker, Guarded

    torch.set_num_threads(1)
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    X_fit, X_pool, y_fit, _ = train_test_split(X, y, test_size=0.5, random_state=seed, stratify=y)
    base_model = LogisticRegression(max_iter=2000, C=5).fit(_pool_4x4(list(X_fit)), y_fit)
    full_model = CalibratedClassifierCV(SVC(C=10, gamma=0.02, random_state=0), cv=5, ensemble=False).fit(X_fit, y_fit)
    rng = np.random.default_rng(seed)

    def augment(img: np.ndarray) -> np.ndarray:
        dx, dy = rng.integers(-1, 2, size=2)
        shifted = np.roll(np.roll(img.reshape(8, 8), dx, axis=1), dy, axis=0).reshape(64)
        return np.clip(shifted + rng.normal(0, 0.05, 64), 0, 1).astype(np.float32)

    distinct = [augment(X_pool[i]) for i in rng.integers(0, len(X_pool), DISTINCT)]
    stream = [distinct[i] for i in rng.integers(0, DISTINCT, WARMUP + REQUESTS)]

    student = student_tier(StudentSpec(64, (128,), 10, tuple(range(10))), _features, cost=2.0, num_threads=1)

    def guard(tier: Any, timeout_s: float) -> Any:
        if not guarded:
            return tier
        return Guarded(tier, timeout_s=timeout_s, workers=4,
                       breaker=CircuitBreaker(failures=20, window_s=10, cooldown_s=1))

    tiers = [guard(SklearnTier("base", base_model, preprocess=_pool_4x4, cost=1.0), 1.0), guard(student, 1.0),
             guard(SklearnTier("full", full_model, preprocess=np.stack, cost=10.0), 2.0)]
    if cache_kind == "redis":
        from tierswitch.cache.redis import RedisCache

        cache: Any = RedisCache(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15"),
                                namespace=f"benchload:{uuid.uuid4().hex[:10]}", ttl_s=600)
    else:
        cache = MemoryCache(max_entries=50_000)
    router = Router(tiers, Cascade({"base": 0.9, "distilled": 0.75}), cache=cache)
    buffer = MemoryBuffer(capacity=10_000)
    distiller = Distiller(student, buffer, DistillConfig(eval_every=50, min_holdout=150, holdout_share=0.1,
                                                         take_timeout_s=0.05, max_busy=max_busy))
    feeder = DistillFeeder(buffer, _features, shadow_rate=0.05, seed=seed, queue_size=4096).attach(router)
    metrics = RouterMetrics(router, Registry(), name="load")
    metrics.watch("distill", distiller)
    metrics.watch("distill_feed", feeder)
    metrics.watch("distill_buffer", buffer)
    return {"router": router, "cache": cache, "distiller": distiller, "feeder": feeder, "metrics": metrics,
            "stream": stream, "tiers": tiers}


def run_load(cache_kind: str = "redis", guarded: bool = True, max_busy: float = 0.5) -> dict[str, Any]:
    """Warm up, run the timed chunks, and return the figures."""
    world = build(cache_kind, guarded, max_busy=max_busy)
    router, distiller, feeder, stream = world["router"], world["distiller"], world["feeder"], world["stream"]
    errors: list[BaseException] = []

    def one(x: np.ndarray) -> tuple[float, str, bool]:
        t0 = time.perf_counter()
        try:
            routed = router(x, modality="tabular")
        except BaseException as exc:  # counted and reported: the claim is that there are none
            errors.append(exc)
            return time.perf_counter() - t0, "error", False
        return time.perf_counter() - t0, routed.tier, routed.cached

    distiller.start()
    try:
        with ThreadPoolExecutor(CONCURRENCY) as pool:
            list(pool.map(one, stream[:WARMUP]))
            rss = [rss_mb()]
            results: list[tuple[float, str, bool]] = []
            started = time.perf_counter()
            size = REQUESTS // CHUNKS
            for c in range(CHUNKS):
                chunk = stream[WARMUP + c * size: WARMUP + (c + 1) * size]
                results += pool.map(one, chunk)
                rss.append(rss_mb())
            elapsed = time.perf_counter() - started
    finally:
        distiller.stop()
        feeder.stop()
    from tierswitch.metrics import serve_metrics

    with serve_metrics(0, registry=world["metrics"].registry) as server:
        import urllib.request

        scraped = urllib.request.urlopen(server.url, timeout=10).read().decode()
    cache = world["cache"]
    if cache_kind == "redis":
        cache.purge()
        cache.close()
    latencies = np.array([r[0] for r in results])
    tiers = [r[1] for r in results]
    return {
        "cache": cache_kind, "requests": len(results), "concurrency": CONCURRENCY, "errors": len(errors),
        "throughput_rps": len(results) / elapsed, "p50_ms": float(np.percentile(latencies, 50) * 1e3),
        "p99_ms": float(np.percentile(latencies, 99) * 1e3), "max_ms": float(latencies.max() * 1e3),
        "rss_mb": [round(v, 1) for v in rss], "hit_rate": float(np.mean([r[2] for r in results])),
        "share": {t: tiers.count(t) / len(tiers) for t in ("base", "distilled", "full")},
        "distill_steps": distiller.counters["steps"], "promotions": len(distiller.events),
        "feed_dropped": feeder.counters["dropped"], "cache_errors": cache.stats.errors,
        "metrics_lines": scraped.count("\n"),
    }


def report(figures: dict[str, Any]) -> str:
    f = figures
    return (f"{f['cache']:>6}: {f['requests']} requests x{f['concurrency']}, errors {f['errors']}, "
            f"{f['throughput_rps']:.0f} req/s, p50 {f['p50_ms']:.2f} ms, p99 {f['p99_ms']:.2f} ms, "
            f"max {f['max_ms']:.1f} ms, hit rate {f['hit_rate']:.2f}, served base/distilled/full "
            f"{f['share']['base']:.2f}/{f['share']['distilled']:.2f}/{f['share']['full']:.2f}, RSS MB after warm-up "
            f"then each 5k chunk {f['rss_mb']}, distill steps {f['distill_steps']}, promotions {f['promotions']}, "
            f"feed dropped {f['feed_dropped']}, cache errors {f['cache_errors']}")


def test_load_redis_cache_and_background_distillation(benchmark) -> None:
    figures = benchmark.pedantic(run_load, args=("redis",), rounds=1, iterations=1)
    benchmark.extra_info.update(figures)
    print("\n" + report(figures))
    assert figures["errors"] == 0 and figures["requests"] == REQUESTS


def _guard_router(kind: str) -> Any:
    from tierswitch import CallableTier, Fixed, Router
    from tierswitch.reliability import CircuitBreaker, Guarded

    tier: Any = CallableTier("full", lambda x: ("ok", np.array([0.2, 0.8])))
    if kind == "breaker":
        tier = Guarded(tier, breaker=CircuitBreaker())
    elif kind == "timeout":
        tier = Guarded(tier, timeout_s=1.0, breaker=CircuitBreaker())
    return Router([tier], Fixed("full"), cache=None)


@pytest.mark.parametrize("kind", ["plain", "breaker", "timeout"])
def test_guard_overhead_per_request(benchmark, kind: str) -> None:
    """One uncached request through an unguarded tier, a breaker-only guard, and a guard with a timeout (a hop to
    the tier's worker thread and back): the price of each mechanism, single-threaded."""
    benchmark.group = "guard overhead"
    router = _guard_router(kind)
    assert router("warm").output == "ok"
    benchmark(router, "a short question")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", choices=("redis", "memory"), default="redis")
    parser.add_argument("--unguarded", action="store_true", help="tiers without Guarded (for comparison)")
    parser.add_argument("--max-busy", type=float, default=0.5,
                        help="the background trainer's DistillConfig.max_busy (default 0.5; 1.0 trains flat out)")
    args = parser.parse_args()
    print(report(run_load(args.cache, not args.unguarded, args.max_busy)))
