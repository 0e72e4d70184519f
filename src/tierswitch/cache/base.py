"""The ``Cache`` contract: get/set routed results by (tier, tier version, input digest).

The public methods are a template: they build keys, check values are storable, keep per-tier statistics and turn
any backend failure into a miss (a cache never fails a request). Backends implement three small methods over
opaque keys and values: ``_fetch``, ``_store`` and ``_delete`` (plus ``_prepare``, which encodes values before a
write), and their async twins ``_afetch``, ``_astore``, ``_adelete`` when they do I/O.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tierswitch.cache.checks import problem
from tierswitch.errors import CacheError, CorruptCacheValue
from tierswitch.types import Prediction

__all__ = ["Cache", "CacheKey", "CacheStats", "TierStats", "is_storable"]

log = logging.getLogger("tierswitch.cache")

CacheKey = tuple[str, str, str]
"""(tier name, tier version, input digest)."""


@dataclass(slots=True)
class TierStats:
    """Counters for one tier's entries."""

    hits: int = 0
    misses: int = 0
    sets: int = 0
    errors: int = 0
    corrupt: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    rejected: int = 0  # values not stored: non-finite, or over the size bound


@dataclass
class CacheStats:
    """Per-tier counters plus totals; ``snapshot()`` gives a plain dict for decision records and reports."""

    tiers: dict[str, TierStats] = field(default_factory=lambda: defaultdict(TierStats))
    evictions: int = 0

    def total(self, name: str) -> int:
        # Read without the cache's lock (decision records read totals on every request), so iterate a copy: tuple()
        # takes it in one C call, and another thread's first entry for a new tier cannot change the dict mid-sum.
        return sum(getattr(s, name) for s in tuple(self.tiers.values()))

    @property
    def hits(self) -> int:
        return self.total("hits")

    @property
    def misses(self) -> int:
        return self.total("misses")

    @property
    def errors(self) -> int:
        return self.total("errors")

    def hit_rate(self) -> float:
        looked = self.hits + self.misses
        return self.hits / looked if looked else 0.0

    def snapshot(self) -> dict[str, Any]:
        return {
            "hits": self.hits,
            "misses": self.misses,
            "errors": self.errors,
            "corrupt": self.total("corrupt"),
            "sets": self.total("sets"),
            "bytes_read": self.total("bytes_read"),
            "bytes_written": self.total("bytes_written"),
            "rejected": self.total("rejected"),
            "evictions": self.evictions,
            "per_tier": {name: _asdict(s) for name, s in tuple(self.tiers.items())},  # a copy, as in total()
        }


def _asdict(stats: TierStats) -> dict[str, int]:
    return {name: getattr(stats, name) for name in TierStats.__slots__}


def is_storable(prediction: Prediction) -> bool:
    """Only successful, finite results are cached (the rule is ``tierswitch.cache.checks.problem``)."""
    return problem(prediction) is None


class Cache(ABC):
    """Get/set routed results. Thread-safe; every failure of the backend is a miss, counted in ``stats``.

    Every public operation has an async twin (``aget_many``, ``alookup``, ``aset_many``, ...) with the same
    semantics, statistics and error mapping: the template's steps before and after the backend's I/O
    (``_read``, ``_plan``, ``_count_sets``) are shared, and only the I/O call differs (``_fetch`` or ``_afetch``,
    ``_store`` or ``_astore``, ``_delete`` or ``_adelete``). The async seams default to the sync ones, run inline:
    right for a backend that does no I/O (``MemoryCache``); a network backend overrides them.
    """

    def __init__(self) -> None:
        self.stats = CacheStats()
        self._stats_lock = threading.Lock()
        self._last_warning = 0.0

    # -- backend seam ---------------------------------------------------------------------------------------
    @abstractmethod
    def _fetch(self, keys: Sequence[CacheKey]) -> list[Any | None]:
        """Stored values for ``keys`` (None where absent). May raise ``CacheError``."""

    async def _afetch(self, keys: Sequence[CacheKey]) -> list[Any | None]:
        return self._fetch(keys)

    def _prepare(self, items: Sequence[tuple[CacheKey, Prediction]]) -> list[tuple[int, Any]]:
        """Per item: (bytes it will take, or -1 when the backend refuses the value; what ``_store`` writes).
        No I/O here: this step is shared by ``set_many`` and ``aset_many``."""
        return [(0, prediction) for _, prediction in items]

    @abstractmethod
    def _store(self, writes: Sequence[tuple[CacheKey, Any]]) -> None:
        """Write every prepared value. May raise ``CacheError``."""

    async def _astore(self, writes: Sequence[tuple[CacheKey, Any]]) -> None:
        self._store(writes)

    @abstractmethod
    def _delete(self, keys: Sequence[CacheKey]) -> None:
        """Remove ``keys``. May raise ``CacheError``."""

    async def _adelete(self, keys: Sequence[CacheKey]) -> None:
        self._delete(keys)

    def _decode(self, key: CacheKey, stored: Any) -> tuple[Prediction, int]:
        """Turn a stored value back into a Prediction and its size in bytes; raise ``CorruptCacheValue``."""
        return stored, 0

    @abstractmethod
    def clear(self) -> None:
        """Remove every entry this cache owns."""

    # -- public template: reads -----------------------------------------------------------------------------
    def get(self, tier: str, version: str, digest: str) -> Prediction | None:
        """The cached prediction of ``tier`` at ``version`` for the input ``digest``, or None."""
        return self.get_many([(tier, version, digest)])[0]

    async def aget(self, tier: str, version: str, digest: str) -> Prediction | None:
        return (await self.aget_many([(tier, version, digest)]))[0]

    def get_many(self, keys: Sequence[CacheKey]) -> list[Prediction | None]:
        """Look up many keys in one backend round trip; misses (and failures) are None."""
        if not keys:
            return []
        try:
            stored = self._fetch(keys)
        except CacheError as exc:
            return self._fetch_failed(keys, exc)
        results, corrupt = self._read(keys, stored)
        if corrupt:
            try:
                self._delete(corrupt)
            except CacheError as exc:
                self._count_error(corrupt, exc)
        return results

    async def aget_many(self, keys: Sequence[CacheKey]) -> list[Prediction | None]:
        """``get_many`` for coroutines."""
        if not keys:
            return []
        try:
            stored = await self._afetch(keys)
        except CacheError as exc:
            return self._fetch_failed(keys, exc)
        results, corrupt = self._read(keys, stored)
        if corrupt:
            try:
                await self._adelete(corrupt)
            except CacheError as exc:
                self._count_error(corrupt, exc)
        return results

    def lookup(self, digest: str, tiers: Sequence[tuple[str, str]]) -> Prediction | None:
        """The first hit among ``tiers`` ((name, version) pairs, in preference order) for ``digest``."""
        return _first(self.get_many([(name, version, digest) for name, version in tiers]))

    async def alookup(self, digest: str, tiers: Sequence[tuple[str, str]]) -> Prediction | None:
        """``lookup`` for coroutines."""
        return _first(await self.aget_many([(name, version, digest) for name, version in tiers]))

    def _fetch_failed(self, keys: Sequence[CacheKey], exc: CacheError) -> list[Prediction | None]:
        self._count_error(keys, exc)
        return [None] * len(keys)

    def _read(self, keys: Sequence[CacheKey], stored: Sequence[Any]) -> tuple[list[Prediction | None], list[CacheKey]]:
        """Decode what the backend returned and count hits, misses and corrupt values: (results, corrupt keys)."""
        # Decode outside the stats lock (decoding is the costly part of a batch, and threads must not queue on
        # it); then count everything under the lock at once.
        results: list[Prediction | None] = []
        sizes: list[int] = []
        corrupt: list[CacheKey] = []
        decode = self._decode
        reason = ""
        for key, value in zip(keys, stored):
            if value is None:
                results.append(None)
                sizes.append(-1)
                continue
            try:
                prediction, size = decode(key, value)
            except CorruptCacheValue as exc:
                corrupt.append(key)
                reason = reason or str(exc)
                results.append(None)
                sizes.append(-2)
                continue
            results.append(prediction)
            sizes.append(size)
        tiers = self.stats.tiers
        with self._stats_lock:
            for key, size in zip(keys, sizes):
                stats = tiers[key[0]]
                if size >= 0:
                    stats.hits += 1
                    stats.bytes_read += size
                else:
                    stats.misses += 1
                    if size == -2:
                        stats.corrupt += 1
        if corrupt:
            self._warn(f"deleted {len(corrupt)} corrupt cache value(s), e.g. {corrupt[0]}: {reason}")
        return results, corrupt

    # -- public template: writes ----------------------------------------------------------------------------
    def set(self, digest: str, prediction: Prediction, *, checked: bool = False) -> bool:
        """Store ``prediction`` for the input ``digest`` under its tier and version. True when stored."""
        return self.set_many([(digest, prediction)], checked=checked) == 1

    async def aset(self, digest: str, prediction: Prediction, *, checked: bool = False) -> bool:
        return await self.aset_many([(digest, prediction)], checked=checked) == 1

    def set_many(self, items: Sequence[tuple[str, Prediction]], *, checked: bool = False) -> int:
        """Store many (digest, prediction) pairs in one round trip; returns how many were stored.

        Non-finite predictions are refused and counted, never half-written. ``checked=True`` says every
        prediction came from a tier's ``predict`` (which already refused non-finite numbers), so the check is
        not repeated on the router's hot path.
        """
        plan = self._plan(items, checked)
        if plan.writes:
            try:
                self._store(plan.writes)
            except CacheError as exc:
                plan.failed(exc)
        return self._count_sets(plan)

    async def aset_many(self, items: Sequence[tuple[str, Prediction]], *, checked: bool = False) -> int:
        """``set_many`` for coroutines."""
        plan = self._plan(items, checked)
        if plan.writes:
            try:
                await self._astore(plan.writes)
            except CacheError as exc:
                plan.failed(exc)
        return self._count_sets(plan)

    def _plan(self, items: Sequence[tuple[str, Prediction]], checked: bool) -> _SetPlan:
        plan = _SetPlan()
        keep: list[tuple[CacheKey, Prediction]] = []
        for digest, prediction in items:
            if checked or is_storable(prediction):
                keep.append(((prediction.tier, prediction.tier_version, digest), prediction))
            else:
                plan.refused.append(prediction.tier)
        if keep:
            for (key, _), (size, value) in zip(keep, self._prepare(keep)):
                if size < 0:
                    plan.refused.append(key[0])
                else:
                    plan.writes.append((key, value))
                    plan.sizes.append(size)
        return plan

    def _count_sets(self, plan: _SetPlan) -> int:
        if plan.error is not None:
            self._count_error([k for k, _ in plan.writes], plan.error)
            plan.writes, plan.sizes = [], []
        with self._stats_lock:
            tiers = self.stats.tiers
            for tier in plan.refused:
                tiers[tier].rejected += 1
            for (key, _), size in zip(plan.writes, plan.sizes):
                stats = tiers[key[0]]
                stats.sets += 1
                stats.bytes_written += size
        return len(plan.writes)

    def delete(self, tier: str, version: str, digest: str) -> None:
        try:
            self._delete([(tier, version, digest)])
        except CacheError as exc:
            self._count_error([(tier, version, digest)], exc)

    async def adelete(self, tier: str, version: str, digest: str) -> None:
        try:
            await self._adelete([(tier, version, digest)])
        except CacheError as exc:
            self._count_error([(tier, version, digest)], exc)

    # -- failure accounting ---------------------------------------------------------------------------------
    def _count_error(self, keys: Sequence[CacheKey], exc: Exception) -> None:
        with self._stats_lock:
            for tier in {k[0] for k in keys}:
                self.stats.tiers[tier].errors += 1
        self._warn(f"cache backend failed, treated as a miss: {exc}")

    def _warn(self, message: str, every_s: float = 10.0) -> None:
        """At most one warning per ``every_s`` seconds, so a dead backend does not flood the logs."""
        now = time.monotonic()
        if now - self._last_warning >= every_s:
            self._last_warning = now
            log.warning("%s: %s", type(self).__name__, message)


def _first(found: Sequence[Prediction | None]) -> Prediction | None:
    for prediction in found:
        if prediction is not None:
            return prediction
    return None


@dataclass(slots=True)
class _SetPlan:
    """One write, between the shared steps and the backend's I/O: what to write, what was refused, and whether
    the write failed."""

    writes: list[tuple[CacheKey, Any]] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    error: CacheError | None = None

    def failed(self, exc: CacheError) -> None:
        self.error = exc
