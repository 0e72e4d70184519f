"""The embedded default cache: an in-process LRU with a TTL and a bound on entries."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from tierswitch.cache.base import Cache, CacheKey
from tierswitch.errors import ConfigError
from tierswitch.types import Prediction
from tierswitch.validation import positive

__all__ = ["MemoryCache"]


class MemoryCache(Cache):
    """LRU cache of predictions in this process.

    ``max_entries`` bounds memory (the least recently used entry goes first, counted in ``stats.evictions``);
    ``ttl_s`` (None: no expiry) ages entries out; ``clock`` is injectable so tests never sleep. Values are kept as
    the immutable ``Prediction`` objects themselves (their probability arrays are read-only), so a hit costs no
    decoding.
    """

    def __init__(
        self,
        max_entries: int = 100_000,
        ttl_s: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        positive("cache.max_entries", max_entries, integer=True)
        if ttl_s is not None and (isinstance(ttl_s, bool) or not isinstance(ttl_s, (int, float)) or not ttl_s > 0):
            raise ConfigError("cache.ttl_s", f"must be > 0 or None, got {ttl_s!r}")
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self._clock = clock
        self._entries: OrderedDict[CacheKey, tuple[float, Prediction]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def _fetch(self, keys: Sequence[CacheKey]) -> list[Any | None]:
        now = self._clock()
        out: list[Any | None] = []
        with self._lock:
            for key in keys:
                entry = self._entries.get(key)
                if entry is None:
                    out.append(None)
                elif entry[0] < now:
                    del self._entries[key]
                    out.append(None)
                else:
                    self._entries.move_to_end(key)
                    out.append(entry[1])
        return out

    def lookup(self, digest: str, tiers: Sequence[tuple[str, str]]) -> Prediction | None:
        """The first hit among ``tiers`` for ``digest``: the router's per-request path, so it takes each lock once
        and skips the batch machinery; every key is still looked up and counted, as ``get_many`` would."""
        now = self._clock()
        entries = self._entries
        first: Prediction | None = None
        outcomes = []
        with self._lock:
            for name, version in tiers:
                key = (name, version, digest)
                entry = entries.get(key)
                if entry is not None and entry[0] < now:
                    del entries[key]
                    entry = None
                if entry is None:
                    outcomes.append((name, False))
                    continue
                entries.move_to_end(key)
                outcomes.append((name, True))
                if first is None:
                    first = entry[1]
        with self._stats_lock:
            tier_stats = self.stats.tiers
            for name, hit in outcomes:
                if hit:
                    tier_stats[name].hits += 1
                else:
                    tier_stats[name].misses += 1
        return first

    def _store(self, items: Sequence[tuple[CacheKey, Prediction]]) -> list[int]:
        expires = self._clock() + self.ttl_s if self.ttl_s is not None else float("inf")
        evicted = 0
        with self._lock:
            for key, prediction in items:
                self._entries[key] = (expires, prediction)
                self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
                evicted += 1
        if evicted:
            with self._stats_lock:
                self.stats.evictions += evicted
        return [0] * len(items)

    def _delete(self, keys: Sequence[CacheKey]) -> None:
        with self._lock:
            for key in keys:
                self._entries.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
