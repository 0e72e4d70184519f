"""Router counters and live agreement: what the router saw, for metrics, reports and policies."""

from __future__ import annotations

import threading
from collections import Counter, deque
from typing import Any

__all__ = ["LiveAgreement", "RouterStats"]


class RouterStats:
    """Thread-safe counters: requests, answers per tier, escalations, fallbacks, failures, cache hits, hook errors."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.served: Counter[str] = Counter()
        self.failed_by_tier: Counter[str] = Counter()

    def add(self, served_by: str | None = None, **counts: int) -> None:
        with self._lock:
            if served_by is not None:
                self.served[served_by] += 1
            for name, n in counts.items():
                if n:
                    self.counts[name] += n

    def served_one(self, tier: str, escalations: int = 0, fallbacks: int = 0, failures: int = 0,
                   cache_hit: bool = False) -> None:
        """Count one answered request (the hot path: no keyword packing)."""
        with self._lock:
            self.served[tier] += 1
            counts = self.counts
            counts["requests"] += 1
            if cache_hit:
                counts["cache_hits"] += 1
            if escalations:
                counts["escalations"] += escalations
            if fallbacks:
                counts["fallbacks"] += fallbacks
            if failures:
                counts["failures"] += failures

    def failed(self, tier: str) -> None:
        """Count one failure of ``tier`` (the request's own ``failures`` count is added when it finishes)."""
        with self._lock:
            self.failed_by_tier[tier] += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {**dict(self.counts), "served": dict(self.served), "failures_by_tier": dict(self.failed_by_tier)}


class LiveAgreement:
    """Each tier's agreement with the full tier over its last ``window`` shadow comparisons.

    ``view`` is a plain dict kept up to date on every observation, so the router hands it to every
    ``RoutingContext`` without copying; a tier appears in it once it has ``min_samples`` comparisons.
    """

    def __init__(self, window: int = 500, min_samples: int = 30) -> None:
        self.window = window
        self.min_samples = min_samples
        self._seen: dict[str, deque[bool]] = {}
        self._agreed: dict[str, int] = {}
        self._lock = threading.Lock()
        self.view: dict[str, float] = {}

    def observe(self, tier: str, agreed: bool) -> None:
        with self._lock:
            seen = self._seen.setdefault(tier, deque())
            seen.append(bool(agreed))
            self._agreed[tier] = self._agreed.get(tier, 0) + bool(agreed)
            if len(seen) > self.window:
                self._agreed[tier] -= seen.popleft()
            if len(seen) >= self.min_samples:
                self.view[tier] = self._agreed[tier] / len(seen)

    def samples(self, tier: str) -> int:
        with self._lock:
            return len(self._seen.get(tier, ()))
