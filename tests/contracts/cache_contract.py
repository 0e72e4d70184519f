"""The contract every Cache keeps, run against each backend by tests/test_cache_contract.py.

A cache (1) returns what was stored for (tier, version, digest), equal in output, probabilities (bit-exact),
confidence, cost and tier, and None for anything else; (2) never serves an entry under another tier, version or
digest; (3) stores only successful, finite results and counts the ones it refuses; (4) answers ``get_many`` in the
order asked, misses as None; (5) keeps per-tier hit/miss/set statistics; (6) deletes and clears; (7) is safe to use
from many threads at once.

Use: define a ``cache_factory`` fixture returning a zero-argument callable that builds a fresh, empty cache (its
entries are cleared after each test), and subclass ``CacheContract``. ``ViaAsync(cache)`` runs the same contract
through the async methods (``aget_many``, ``alookup``, ``aset_many``, ``adelete``): each call is one
``asyncio.run``, so every call also starts a fresh event loop (a Redis cache makes and closes a client per loop).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

import numpy as np
import pytest

from tierswitch.cache.base import Cache
from tierswitch.types import Prediction


def prediction(
    output: Any = "yes", tier: str = "full", version: str = "1", *, probs: Any = None, confidence: float | None = 0.9,
    cost: float = 3.0,
) -> Prediction:
    if probs is not None:
        probs = np.asarray(probs, dtype=np.float64)
        probs.setflags(write=False)
    return Prediction(output, tier, version, cost, 0.002, probs, confidence)


def assert_same(got: Prediction | None, want: Prediction) -> None:
    assert got is not None, "expected a hit"
    assert (got.tier, got.tier_version, got.cost, got.confidence) == (
        want.tier, want.tier_version, want.cost, want.confidence
    )
    if isinstance(want.output, np.ndarray):
        assert isinstance(got.output, np.ndarray) and got.output.dtype == want.output.dtype
        assert got.output.tobytes() == want.output.tobytes() and got.output.shape == want.output.shape
    else:
        assert got.output == want.output
    if want.probs is None:
        assert got.probs is None
    else:
        assert got.probs is not None and got.probs.dtype == want.probs.dtype
        assert got.probs.tobytes() == want.probs.tobytes(), "probabilities must round-trip bit-exact"


class ViaAsync:
    """The sync Cache surface, served by a cache's async methods (everything else passes through)."""

    def __init__(self, cache: Cache) -> None:
        self.inner = cache

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _run(self, op: Callable[[], Awaitable[Any]]) -> Any:
        async def once() -> Any:
            try:
                return await op()
            finally:
                aclose = getattr(self.inner, "aclose", None)
                if aclose is not None:
                    await aclose()

        return asyncio.run(once())

    def get(self, tier: str, version: str, digest: str) -> Prediction | None:
        return self._run(lambda: self.inner.aget(tier, version, digest))  # type: ignore[no-any-return]

    def get_many(self, keys: Sequence[tuple[str, str, str]]) -> list[Prediction | None]:
        return self._run(lambda: self.inner.aget_many(keys))  # type: ignore[no-any-return]

    def lookup(self, digest: str, tiers: Sequence[tuple[str, str]]) -> Prediction | None:
        return self._run(lambda: self.inner.alookup(digest, tiers))  # type: ignore[no-any-return]

    def set(self, digest: str, p: Prediction, *, checked: bool = False) -> bool:
        return self._run(lambda: self.inner.aset(digest, p, checked=checked))  # type: ignore[no-any-return]

    def set_many(self, items: Sequence[tuple[str, Prediction]], *, checked: bool = False) -> int:
        return self._run(lambda: self.inner.aset_many(items, checked=checked))  # type: ignore[no-any-return]

    def delete(self, tier: str, version: str, digest: str) -> None:
        self._run(lambda: self.inner.adelete(tier, version, digest))


class CacheContract:
    """Subclass in a module that provides a ``cache_factory`` fixture."""

    @pytest.fixture
    def cache(self, cache_factory: Callable[[], Cache]) -> Iterator[Cache]:
        cache = cache_factory()
        yield cache
        cache.clear()

    def test_miss_then_hit(self, cache: Cache) -> None:
        want = prediction(probs=[0.1, 0.2, 0.7])
        assert cache.get("full", "1", "d1") is None
        assert cache.set("d1", want) is True
        assert_same(cache.get("full", "1", "d1"), want)
        assert cache.stats.misses == 1 and cache.stats.hits == 1

    @pytest.mark.parametrize(
        "output",
        ["text ü 漢字", 7, 2.5, True, None, [1, "a", [2.0]], {"label": "x", "scores": [1, 2]},
         np.arange(12, dtype=np.int32).reshape(3, 4), np.array([0.1, 1e-300, -0.0], dtype=np.float64)],
        ids=["str", "int", "float", "bool", "none", "list", "dict", "int-array", "float-array"],
    )
    def test_outputs_round_trip(self, cache: Cache, output: Any) -> None:
        want = prediction(output, confidence=None)
        assert cache.set("d", want)
        assert_same(cache.get("full", "1", "d"), want)

    def test_probabilities_are_bit_exact_and_read_only(self, cache: Cache) -> None:
        probs = np.random.default_rng(0).dirichlet(np.ones(77))
        want = prediction(probs=probs)
        cache.set("d", want)
        got = cache.get("full", "1", "d")
        assert_same(got, want)
        assert got is not None and got.probs is not None and not got.probs.flags.writeable

    def test_keys_are_isolated_by_tier_version_and_digest(self, cache: Cache) -> None:
        cache.set("d", prediction("a", "full", "1"))
        assert cache.get("full", "2", "d") is None, "a version bump must make the old entry unreachable"
        assert cache.get("base", "1", "d") is None
        assert cache.get("full", "1", "e") is None
        cache.set("d", prediction("b", "full", "2"))
        assert cache.get("full", "1", "d").output == "a"  # type: ignore[union-attr]
        assert cache.get("full", "2", "d").output == "b"  # type: ignore[union-attr]

    def test_set_overwrites(self, cache: Cache) -> None:
        cache.set("d", prediction("old"))
        cache.set("d", prediction("new"))
        assert cache.get("full", "1", "d").output == "new"  # type: ignore[union-attr]

    @pytest.mark.parametrize(
        "bad",
        [
            dict(probs=[0.5, float("nan")]),
            dict(confidence=float("inf")),
            dict(output=float("nan")),
            dict(output=np.array([1.0, np.inf])),
            dict(cost=float("nan")),
        ],
        ids=["nan-probs", "inf-confidence", "nan-output", "inf-array-output", "nan-cost"],
    )
    def test_non_finite_results_are_refused_and_counted(self, cache: Cache, bad: dict[str, Any]) -> None:
        assert cache.set("d", prediction(**bad)) is False
        assert cache.get("full", "1", "d") is None
        assert cache.stats.tiers["full"].rejected == 1
        assert cache.stats.tiers["full"].sets == 0

    def test_get_many_keeps_order_and_reports_misses(self, cache: Cache) -> None:
        stored = cache.set_many([(f"d{i}", prediction(i)) for i in range(0, 10, 2)])
        assert stored == 5
        got = cache.get_many([("full", "1", f"d{i}") for i in range(10)])
        assert [None if g is None else g.output for g in got] == [0, None, 2, None, 4, None, 6, None, 8, None]
        assert cache.stats.hits == 5 and cache.stats.misses == 5

    def test_empty_batches_are_no_ops(self, cache: Cache) -> None:
        assert cache.get_many([]) == [] and cache.set_many([]) == 0
        assert cache.stats.snapshot()["errors"] == 0

    def test_set_many_stores_the_finite_and_refuses_the_rest(self, cache: Cache) -> None:
        items = [("a", prediction(1)), ("b", prediction(float("nan"))), ("c", prediction(3, "base"))]
        assert cache.set_many(items) == 2
        assert cache.get("full", "1", "a").output == 1  # type: ignore[union-attr]
        assert cache.get("full", "1", "b") is None
        assert cache.get("base", "1", "c").output == 3  # type: ignore[union-attr]

    def test_lookup_returns_the_first_hit_in_preference_order(self, cache: Cache) -> None:
        cache.set("d", prediction("cheap", "base"))
        cache.set("d", prediction("strong", "full"))
        assert cache.lookup("d", [("full", "1"), ("base", "1")]).output == "strong"  # type: ignore[union-attr]
        assert cache.lookup("d", [("full", "9"), ("base", "1")]).output == "cheap"  # type: ignore[union-attr]
        assert cache.lookup("d", [("full", "9")]) is None

    def test_per_tier_statistics(self, cache: Cache) -> None:
        cache.set("d", prediction(tier="base"))
        cache.get("base", "1", "d")
        cache.get("base", "1", "x")
        cache.get("full", "1", "d")
        snap = cache.stats.snapshot()
        assert snap["per_tier"]["base"]["hits"] == 1 and snap["per_tier"]["base"]["misses"] == 1
        assert snap["per_tier"]["base"]["sets"] == 1 and snap["per_tier"]["full"]["misses"] == 1
        assert snap["hits"] == 1 and snap["misses"] == 2 and snap["errors"] == 0
        assert 0.0 < cache.stats.hit_rate() < 1.0

    def test_delete_and_clear(self, cache: Cache) -> None:
        cache.set_many([("a", prediction(1)), ("b", prediction(2))])
        cache.delete("full", "1", "a")
        assert cache.get("full", "1", "a") is None and cache.get("full", "1", "b") is not None
        cache.clear()
        assert cache.get("full", "1", "b") is None

    def test_concurrent_use_from_threads(self, cache: Cache) -> None:
        n_threads, per_thread = 8, 50
        start = threading.Barrier(n_threads)
        wrong: list[str] = []

        def work(t: int) -> None:
            start.wait()
            for i in range(per_thread):
                digest = f"t{t}-{i}"
                cache.set(digest, prediction(digest))
                got = cache.get("full", "1", digest)
                if got is None or got.output != digest:
                    wrong.append(digest)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(n_threads)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert wrong == []
        assert cache.stats.hits == n_threads * per_thread
        assert cache.stats.tiers["full"].sets == n_threads * per_thread
