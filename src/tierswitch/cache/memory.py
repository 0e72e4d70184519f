"""The embedded default cache: an in-process LRU with a TTL, a bound on entries and a budget in bytes."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from tierswitch.cache.base import Cache, CacheKey
from tierswitch.cache.freeze import freeze, thaw
from tierswitch.cache.ttl import check_ttl
from tierswitch.errors import TierswitchError
from tierswitch.types import Prediction
from tierswitch.validation import positive

__all__ = ["MemoryCache"]

_PREDICTION_OVERHEAD = 200  # the Prediction object, its key tuple and the LRU's bookkeeping, roughly


class _Entry(NamedTuple):
    expires: float
    prediction: Prediction  # holds the cache's private (frozen) copy of the output
    size: int
    mutable: bool  # the output has mutable parts: each hit gets a fresh copy


class MemoryCache(Cache):
    """LRU cache of predictions in this process.

    ``max_entries`` and ``max_bytes`` (default 256 MB; None: no byte budget) bound memory: the least recently
    used entries go first (counted in ``stats.evictions``), and a single value larger than ``max_bytes`` is not
    stored (counted as rejected). Sizes are estimates (``tierswitch.cache.freeze``: ``sys.getsizeof`` of each
    part, arrays by ``nbytes``). ``ttl_s`` (None: no expiry) ages entries out; ``clock`` is injectable so tests
    never sleep.

    Outputs are kept as private copies (``freeze``): a caller mutating the output it got, or a model reusing its
    output buffer, never changes what later hits return. Immutable outputs (a label, a string, a number) and
    numeric arrays (read-only) are shared as they are, so their hits cost no copying; lists, dicts and other
    mutable outputs are copied for each hit. The async methods run inline (there is no I/O to wait for).
    """

    def __init__(
        self,
        max_entries: int = 100_000,
        ttl_s: float | None = None,
        *,
        max_bytes: int | None = 256 << 20,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        positive("cache.max_entries", max_entries, integer=True)
        if max_bytes is not None:
            positive("cache.max_bytes", max_bytes, integer=True)
        check_ttl(ttl_s)
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.ttl_s = ttl_s
        self.bytes = 0  # the size estimate of everything held now
        self._clock = clock
        self._entries: OrderedDict[CacheKey, _Entry] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def _fetch(self, keys: Sequence[CacheKey]) -> list[Any | None]:
        now = self._clock()
        out: list[Any | None] = []
        with self._lock:
            for key in keys:
                entry = self._entries.get(key)
                if entry is not None and entry.expires < now:
                    self._drop(key)
                    entry = None
                if entry is not None:
                    self._entries.move_to_end(key)
                out.append(entry)
        return out

    def _decode(self, key: CacheKey, stored: Any) -> tuple[Prediction, int]:
        return _served(stored), 0

    def lookup(self, digest: str, tiers: Sequence[tuple[str, str]]) -> Prediction | None:
        """The first hit among ``tiers`` for ``digest``: the router's per-request path, so it takes each lock once
        and skips the batch machinery; every key is still looked up and counted, as ``get_many`` would."""
        now = self._clock()
        entries = self._entries
        first: _Entry | None = None
        outcomes = []
        with self._lock:
            for name, version in tiers:
                key = (name, version, digest)
                entry = entries.get(key)
                if entry is not None and entry.expires < now:
                    self._drop(key)
                    entry = None
                if entry is None:
                    outcomes.append((name, False))
                    continue
                entries.move_to_end(key)
                outcomes.append((name, True))
                if first is None:
                    first = entry
        with self._stats_lock:
            tier_stats = self.stats.tiers
            for name, hit in outcomes:
                if hit:
                    tier_stats[name].hits += 1
                else:
                    tier_stats[name].misses += 1
        return None if first is None else _served(first)

    async def alookup(self, digest: str, tiers: Sequence[tuple[str, str]]) -> Prediction | None:
        return self.lookup(digest, tiers)

    def _prepare(self, items: Sequence[tuple[CacheKey, Prediction]]) -> list[tuple[int, Any]]:
        out: list[tuple[int, Any]] = []
        budget = self.max_bytes
        for (tier, _, _), prediction in items:
            try:
                output, size, mutable = freeze(prediction.output)
            except TierswitchError as exc:
                self._warn(f"not caching a {tier!r} result: {exc}")
                out.append((-1, None))
                continue
            probs = prediction.probs
            size += _PREDICTION_OVERHEAD + (0 if probs is None else probs.nbytes)
            if budget is not None and size > budget:
                out.append((-1, None))
                continue
            if output is not prediction.output:
                prediction = Prediction(output, prediction.tier, prediction.tier_version, prediction.cost,
                                        prediction.latency_s, probs, prediction.confidence, prediction.usage)
            out.append((size, _Entry(0.0, prediction, size, mutable)))
        return out

    def _store(self, writes: Sequence[tuple[CacheKey, Any]]) -> None:
        expires = self._clock() + self.ttl_s if self.ttl_s is not None else float("inf")
        evicted = 0
        entries = self._entries
        with self._lock:
            for key, entry in writes:
                self._drop(key)
                entries[key] = _Entry(expires, entry.prediction, entry.size, entry.mutable)  # _replace is 5x slower
                self.bytes += entry.size
            budget = self.max_bytes if self.max_bytes is not None else float("inf")
            while len(entries) > self.max_entries or self.bytes > budget:
                _, gone = entries.popitem(last=False)
                self.bytes -= gone.size
                evicted += 1
        if evicted:
            with self._stats_lock:
                self.stats.evictions += evicted

    def _drop(self, key: CacheKey) -> None:
        """Remove one entry (the caller holds ``_lock``)."""
        gone = self._entries.pop(key, None)
        if gone is not None:
            self.bytes -= gone.size

    def _delete(self, keys: Sequence[CacheKey]) -> None:
        with self._lock:
            for key in keys:
                self._drop(key)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.bytes = 0


def _served(entry: _Entry) -> Prediction:
    """What a hit returns: the stored prediction, with a fresh copy of its output when that has mutable parts."""
    p = entry.prediction
    if not entry.mutable:
        return p
    return Prediction(thaw(p.output), p.tier, p.tier_version, p.cost, p.latency_s, p.probs, p.confidence, p.usage)
