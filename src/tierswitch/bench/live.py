"""The live benchmark: run real tiers (and a router over them) on a labelled dataset and measure them.

Per tier and for the router: accuracy (output == label, or a ``correct(output, label)`` function), mean cost,
latency p50/p99 of single requests, throughput of batched calls (tiers) or sequential requests (router), peak
memory (Python allocations under ``tracemalloc`` during a pass over a sample, and the growth of the process's RSS
high-water mark), and model size (parameter/array bytes, best effort: None when the tier does not say).
"""

from __future__ import annotations

import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from tierswitch.tiers.base import Tier

__all__ = ["model_size", "run_live"]


def _rss_peak_bytes() -> int | None:
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # Linux reports KiB, macOS bytes


def _array_bytes(obj: Any, depth: int = 0) -> int:
    if isinstance(obj, np.ndarray):
        return int(obj.nbytes)
    if depth > 3:
        return 0
    if hasattr(obj, "data") and hasattr(obj, "indices") and hasattr(obj, "indptr"):  # scipy sparse
        return int(obj.data.nbytes + obj.indices.nbytes + obj.indptr.nbytes)
    if isinstance(obj, (list, tuple)):
        return sum(_array_bytes(v, depth + 1) for v in obj)
    if isinstance(obj, dict):
        return sum(_array_bytes(v, depth + 1) for v in obj.values())
    if hasattr(obj, "__dict__") and type(obj).__module__.split(".")[0] in ("sklearn", "tierswitch"):
        return sum(_array_bytes(v, depth + 1) for k, v in vars(obj).items() if not k.startswith("__"))
    return 0


def model_size(tier: Tier) -> int | None:
    """Bytes of the tier's model: ``model_size_bytes()``/``nbytes()`` when offered, torch parameters and buffers,
    or the numpy arrays of a fitted scikit-learn model (``tier.model``, or ``fn.model`` / the object behind a bound
    method for callable tiers); None when unknown."""
    fn = getattr(tier, "fn", None)
    owners = [o for o in (tier, getattr(fn, "__self__", None), getattr(fn, "model", None), getattr(tier, "model", None))
              if o is not None]
    for owner in owners:
        for method in ("model_size_bytes", "nbytes"):
            size = getattr(owner, method, None)
            if callable(size):
                return int(size())
    for value in vars(tier).values():
        for module in value if isinstance(value, tuple) else (value,):
            if type(module).__module__.startswith("torch") and hasattr(module, "parameters"):
                tensors = list(module.parameters()) + list(module.buffers())
                return int(sum(t.numel() * t.element_size() for t in tensors))
    sizes = [_array_bytes(o) for o in owners[1:]]
    return max(sizes) if sizes and max(sizes) > 0 else None


def _percentiles(latencies: Sequence[float]) -> dict[str, float]:
    arr = np.asarray(latencies, dtype=np.float64) * 1e3
    return {"latency_p50_ms": float(np.percentile(arr, 50)), "latency_p99_ms": float(np.percentile(arr, 99))}


def _memory(run: Callable[[], Any]) -> dict[str, int | None]:
    rss_before = _rss_peak_bytes()
    tracemalloc.start()
    try:
        run()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    rss_after = _rss_peak_bytes()
    growth = None if rss_before is None or rss_after is None else rss_after - rss_before
    return {"peak_python_bytes": int(peak), "rss_peak_growth_bytes": growth}


def _lengths(xs: Sequence[Any]) -> list[int]:
    from tierswitch.estimator.features import extract_features

    return [extract_features(x).length for x in xs]


def _bench_tier(tier: Tier, xs: list[Any], labels: list[Any], correct: Callable[[Any, Any], bool],
                batch_size: int, memory_sample: int) -> dict[str, Any]:
    lengths = _lengths(xs)
    sample = xs[:memory_sample]
    mem = _memory(lambda: tier.predict(sample, lengths[:memory_sample]))
    latencies, outputs, costs = [], [], []
    for x, n in zip(xs, lengths):
        started = time.perf_counter()
        p = tier.predict_one(x, n)
        latencies.append(time.perf_counter() - started)
        outputs.append(p.output)
        costs.append(p.cost)
    started = time.perf_counter()
    for i in range(0, len(xs), batch_size):
        tier.predict(xs[i:i + batch_size], lengths[i:i + batch_size])
    elapsed = time.perf_counter() - started
    return {
        "accuracy": float(np.mean([bool(correct(o, y)) for o, y in zip(outputs, labels)])),
        "cost": float(np.mean(costs)),
        **_percentiles(latencies),
        "throughput_per_s": len(xs) / elapsed if elapsed > 0 else float("inf"),
        "batch_size": batch_size,
        **mem,
        "model_size_bytes": model_size(tier),
    }


def _bench_router(router: Any, xs: list[Any], labels: list[Any], correct: Callable[[Any, Any], bool]) -> dict[str, Any]:
    latencies, hits, outputs, costs, tiers = [], 0, [], [], []
    started_all = time.perf_counter()
    for x in xs:
        started = time.perf_counter()
        routed = router(x)
        latencies.append(time.perf_counter() - started)
        outputs.append(routed.output)
        costs.append(routed.cost)
        tiers.append(routed.tier)
        hits += routed.cached
    elapsed = time.perf_counter() - started_all
    names = list(router.tier_order)
    return {
        "accuracy": float(np.mean([bool(correct(o, y)) for o, y in zip(outputs, labels)])),
        "cost": float(np.mean(costs)),
        **_percentiles(latencies),
        "throughput_per_s": len(xs) / elapsed if elapsed > 0 else float("inf"),
        "shares": {n: tiers.count(n) / len(tiers) for n in names},
        "cache_hits": hits,
        **_memory(lambda: [router(x) for x in xs[:32]]),
        "estimator": type(router.estimator).__name__,
        "policy": repr(router.policy),
    }


def run_live(
    tiers: Sequence[Tier], inputs: Sequence[Any], labels: Sequence[Any], *, router: Any = None,
    correct: Callable[[Any, Any], bool] | None = None, batch_size: int = 32, memory_sample: int = 64,
    progress: bool = False,
) -> dict[str, Any]:
    """Measure every tier, then ``router`` (when given), on ``inputs`` with ``labels``; returns the report."""
    xs, ys = list(inputs), list(labels)
    if not xs or len(xs) != len(ys):
        raise ValueError(f"need as many labels as inputs (got {len(xs)} inputs, {len(ys)} labels), at least one")
    check = correct or (lambda output, label: output == label)
    items: Sequence[Tier] = tiers
    if progress:
        from tqdm import tqdm

        items = tqdm(tiers, desc="tiers", leave=False)
    report: dict[str, Any] = {"rows": len(xs), "tiers": {}}
    for tier in items:
        report["tiers"][tier.name] = _bench_tier(tier, xs, ys, check, batch_size, memory_sample)
    if router is not None:
        report["router"] = _bench_router(router, xs, ys, check)
        full = report["tiers"].get(router.full)
        if full and full["cost"]:
            report["router"]["cost_reduction"] = 1.0 - report["router"]["cost"] / full["cost"]
            report["router"]["accuracy_vs_full"] = report["router"]["accuracy"] / full["accuracy"] if full[
                "accuracy"] else None
    return report
