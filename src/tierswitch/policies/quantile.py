"""Online statistics over a sliding window: exact quantiles of recent values, running sums of recent events, and
the request counters a budget needs (in process, or shared by a fleet in Redis).

The windows are small and exact (no sketches): a window of a few thousand values costs a ``bisect`` and a list
shift per update, cheaper than any policy decision around it. ``WindowQuantile`` and ``WindowCounters`` are not
thread-safe on their own; the policies that own them hold a lock around every update and read.
"""

from __future__ import annotations

import bisect
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from tierswitch.errors import ConfigError
from tierswitch.validation import describe, finite, positive

__all__ = ["Counters", "LocalCounters", "RedisCounters", "WindowCounters", "WindowQuantile", "counters_from_config"]

log = logging.getLogger(__name__)


def _check_window(window: int, field: str) -> int:
    positive(field, window, integer=True)
    return window


class WindowQuantile:
    """Exact quantiles (numpy's default linear interpolation) and the empirical CDF of the last ``window`` values.

    Non-finite values are refused (``ValueError``): one NaN would poison every later quantile.
    """

    def __init__(self, window: int) -> None:
        self.window = _check_window(window, "window")
        self._fifo: deque[float] = deque()
        self._sorted: list[float] = []

    def __len__(self) -> int:
        return len(self._fifo)

    def add(self, value: float) -> None:
        """Add one value, dropping the oldest when the window is full."""
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"WindowQuantile.add: value must be finite, got {describe(value)}")
        self._fifo.append(value)
        bisect.insort(self._sorted, value)
        if len(self._fifo) > self.window:
            old = self._fifo.popleft()
            del self._sorted[bisect.bisect_left(self._sorted, old)]

    def quantile(self, q: float) -> float:
        """The ``q``-quantile (0 <= q <= 1) of the window; ``ValueError`` when empty."""
        data = self._sorted
        if not data:
            raise ValueError("WindowQuantile.quantile: no values yet")
        q = min(1.0, max(0.0, float(q)))
        pos = q * (len(data) - 1)
        low = int(pos)
        high = min(low + 1, len(data) - 1)
        return data[low] + (data[high] - data[low]) * (pos - low)

    def cdf_below(self, value: float) -> float:
        """Share of the window's values that are strictly < ``value`` (0.0 when empty)."""
        if not self._sorted:
            return 0.0
        return bisect.bisect_left(self._sorted, value) / len(self._sorted)

    def cdf(self, value: float) -> float:
        """Share of the window's values that are <= ``value`` (0.0 when empty)."""
        if not self._sorted:
            return 0.0
        return bisect.bisect_right(self._sorted, value) / len(self._sorted)

    def values(self) -> list[float]:
        """The window's values, oldest first."""
        return list(self._fifo)


class WindowCounters:
    """Running sums of the last ``window`` events, each a fixed-length tuple of numbers.

    ``add((1, 0, 2.5))`` records one event; ``totals()`` returns the element-wise sums over the window plus the
    number of events. Sums are recomputed from scratch every ``window`` events so float drift cannot build up.
    """

    def __init__(self, window: int, width: int) -> None:
        self.window = _check_window(window, "window")
        self.width = width
        self._events: deque[tuple[float, ...]] = deque()
        self._sums = [0.0] * width
        self._since_resum = 0

    def add(self, event: Sequence[float]) -> None:
        if len(event) != self.width:
            raise ValueError(f"WindowCounters.add: expected {self.width} numbers, got {len(event)}")
        event = tuple(float(v) for v in event)
        self._events.append(event)
        for i, v in enumerate(event):
            self._sums[i] += v
        if len(self._events) > self.window:
            old = self._events.popleft()
            for i, v in enumerate(old):
                self._sums[i] -= v
        self._since_resum += 1
        if self._since_resum >= self.window:
            self._sums = [math.fsum(e[i] for e in self._events) for i in range(self.width)]
            self._since_resum = 0

    def totals(self) -> tuple[int, tuple[float, ...]]:
        """(number of events in the window, element-wise sums)."""
        return len(self._events), tuple(self._sums)

    def oldest(self) -> tuple[float, ...] | None:
        """The event that leaves the window next (None until the window is full)."""
        if len(self._events) < self.window:
            return None
        return self._events[0]


class Counters(Protocol):
    """Recent request counters of a budget: requests, controlled-tier calls and cost."""

    def add(self, full: float, cost: float) -> None:
        """Count one request: ``full`` is 1.0 when it called the controlled tier, ``cost`` what it paid."""

    def totals(self) -> tuple[int, float, float]:
        """(requests, controlled-tier calls, cost) over the recent window."""

    def to_config(self) -> dict[str, Any] | None:
        """Plain data to rebuild these counters (None: the in-process default)."""


class LocalCounters:
    """In-process counters over the last ``window`` requests."""

    def __init__(self, window: int) -> None:
        self._window = WindowCounters(window, 2)

    def add(self, full: float, cost: float) -> None:
        self._window.add((full, cost))

    def totals(self) -> tuple[int, float, float]:
        n, (full, cost) = self._window.totals()
        return n, full, cost

    def to_config(self) -> dict[str, Any] | None:
        return None


class RedisCounters:
    """Counters shared by every router of a fleet, in Redis: one hash per ``bucket_s`` seconds of wall time
    (fields n, full, cost) under ``{namespace}:budget:{name}:{bucket}``, expiring after the window.

    The window is ``window_s`` seconds (a fleet has no shared request order). Each process batches its own counts
    and talks to Redis at most once per ``refresh_s`` (one pipeline: add this process's counts, read the window's
    buckets), so few requests wait on Redis. Redis errors are logged and counted, never raised: the counts are
    kept and sent on the next successful flush (retries back off up to 30 s), and totals fall back to the last
    known ones plus local counts.
    The client is created on first use (``redis`` is imported then), or injected with ``client``.
    """

    def __init__(
        self,
        name: str,
        *,
        url: str = "redis://127.0.0.1:6379/0",
        namespace: str = "tierswitch",
        window_s: float = 60.0,
        bucket_s: float = 1.0,
        refresh_s: float = 0.5,
        clock: Callable[[], float] = time.time,
        client: Any = None,
    ) -> None:
        for field, value in (("counters.name", name), ("counters.namespace", namespace)):
            if not isinstance(value, str) or not value or any(c.isspace() for c in value):
                raise ConfigError(field, f"must be a non-empty string without spaces, got {describe(value)}")
        for field, seconds in (("counters.window_s", window_s), ("counters.bucket_s", bucket_s)):
            finite(field, seconds, low=0.0, strict=True)  # an infinite window has no number of buckets
        finite("counters.refresh_s", refresh_s, low=0.0)  # NaN would never flush; 0 flushes on every request
        if window_s < bucket_s:
            raise ConfigError("counters.window_s", f"must be >= bucket_s ({bucket_s}), got {window_s}")
        self.name, self.url, self.namespace = name, url, namespace
        self.window_s, self.bucket_s, self.refresh_s = float(window_s), float(bucket_s), float(refresh_s)
        self.clock = clock
        self.prefix = f"{namespace}:budget:{name}:"
        self.errors = 0
        self._client = client
        self._lock = threading.Lock()
        self._pending: dict[int, list[float]] = {}  # bucket -> [n, full, cost] not yet sent
        self._known = (0, 0.0, 0.0)
        self._last_flush = -math.inf
        self._retry_at = -math.inf
        self._failures = 0

    def _redis(self) -> Any:
        if self._client is None:
            import redis  # imported on first use: `import tierswitch` must not need redis

            self._client = redis.Redis.from_url(self.url, socket_timeout=1.0, socket_connect_timeout=1.0)
        return self._client

    def add(self, full: float, cost: float) -> None:
        with self._lock:
            now = self.clock()
            bucket = int(now // self.bucket_s)
            if len(self._pending) > 1:  # counts older than the window would expire in Redis anyway: drop them
                oldest = bucket - int(math.ceil(self.window_s / self.bucket_s)) + 1
                for old in [b for b in self._pending if b < oldest]:
                    del self._pending[old]
            counts = self._pending.setdefault(bucket, [0.0, 0.0, 0.0])
            counts[0] += 1.0
            counts[1] += full
            counts[2] += cost
            if now - self._last_flush >= self.refresh_s and now >= self._retry_at:
                self._flush(now)

    def flush(self) -> None:
        """Send this process's pending counts and re-read the fleet's totals now."""
        with self._lock:
            self._flush(self.clock())

    def _flush(self, now: float) -> None:
        self._last_flush = now
        current = int(now // self.bucket_s)
        n_buckets = int(math.ceil(self.window_s / self.bucket_s))
        ttl = int(math.ceil(self.window_s + 2 * self.bucket_s))
        try:
            pipe = self._redis().pipeline(transaction=False)
            for bucket, (n, full, cost) in self._pending.items():
                key = f"{self.prefix}{bucket}"
                pipe.hincrbyfloat(key, "n", n)
                pipe.hincrbyfloat(key, "full", full)
                pipe.hincrbyfloat(key, "cost", cost)
                pipe.expire(key, ttl)
            for bucket in range(current - n_buckets + 1, current + 1):
                pipe.hmget(f"{self.prefix}{bucket}", "n", "full", "cost")
            replies = pipe.execute()
        except Exception as exc:  # Redis down or slow: keep counting locally, never fail a request
            self.errors += 1
            self._failures += 1
            # back off (1 s, 2 s, 4 s ... 30 s) so a dead Redis costs one timeout now and then, not every flush
            self._retry_at = now + min(30.0, 2.0 ** (self._failures - 1))
            log.warning("budget counters %r: redis unavailable (%s); using local counts", self.name, exc)
            return
        self._failures = 0
        self._retry_at = -math.inf
        self._pending.clear()
        sums = [0.0, 0.0, 0.0]
        for reply in replies[-n_buckets:]:
            for i, v in enumerate(reply):
                sums[i] += float(v) if v is not None else 0.0
        self._known = (int(round(sums[0])), sums[1], sums[2])

    def totals(self) -> tuple[int, float, float]:
        with self._lock:
            n, full, cost = self._known
            for pn, pfull, pcost in self._pending.values():
                n, full, cost = n + int(pn), full + pfull, cost + pcost
            return n, full, cost

    def clear(self) -> int:
        """Delete every key of these counters (tests and resets); returns how many were deleted."""
        client = self._redis()
        keys = list(client.scan_iter(match=f"{self.prefix}*", count=500))
        return int(client.delete(*keys)) if keys else 0

    def to_config(self) -> dict[str, Any] | None:
        return {"kind": "redis", "name": self.name, "url": self.url, "namespace": self.namespace,
                "window_s": self.window_s, "bucket_s": self.bucket_s, "refresh_s": self.refresh_s}


def counters_from_config(config: Mapping[str, Any] | None) -> Counters | None:
    """``None`` or ``{"kind": "local"}``: None (the budget keeps in-process counters over its window);
    ``{"kind": "redis", "name": ..., "url": ..., ...}``: ``RedisCounters``."""
    if config is not None and not isinstance(config, Mapping):
        raise ConfigError("policy.counters", f"must be a mapping, got {type(config).__name__}")
    if config is None or config.get("kind", "local") == "local":
        return None
    if config.get("kind") != "redis":
        raise ConfigError("policy.counters.kind", f"must be 'local' or 'redis', got {describe(config.get('kind'))}")
    allowed = {"name", "url", "namespace", "window_s", "bucket_s", "refresh_s"}
    unknown = set(config) - allowed - {"kind"}
    if unknown:
        raise ConfigError(f"policy.counters.{sorted(unknown)[0]}", f"unknown field; allowed: {sorted(allowed)}")
    if "name" not in config:
        raise ConfigError("policy.counters.name", "is required for redis counters (it names the shared keys)")
    try:
        return RedisCounters(**{k: v for k, v in config.items() if k != "kind"})
    except ConfigError as exc:
        raise ConfigError("policy." + exc.field, str(exc).split(": ", 1)[-1]) from exc
