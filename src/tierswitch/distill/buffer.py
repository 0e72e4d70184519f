"""Where teacher-labelled samples wait for the trainer: the ``Buffer`` seam and the in-process ``MemoryBuffer``.

A buffer hands out fresh samples with ``take`` and forgets them for good only on ``ack`` (after the training step
that used them), so a Redis-backed buffer can redeliver what a crashed worker took. Every buffer also keeps a replay
``Reservoir``: the trainer adds what it trained on (never its holdout), and draws a share of each mini-batch from it
so the student does not forget older traffic.
"""

from __future__ import annotations

import random
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from tierswitch.distill.sample import Sample
from tierswitch.errors import ConfigError
from tierswitch.validation import positive

__all__ = ["Buffer", "MemoryBuffer", "PriorityBuffer", "Reservoir", "Taken"]


@dataclass(slots=True)
class Taken:
    """Samples handed to the trainer; ``ids`` are what ``ack`` needs (stream ids for Redis, empty in memory)."""

    samples: list[Sample]
    ids: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.samples)


class Reservoir:
    """A uniform random sample (Vitter's algorithm R) of at most ``capacity`` items of a stream, seeded."""

    def __init__(self, capacity: int, seed: int = 0) -> None:
        if not isinstance(capacity, int) or capacity < 0:
            raise ConfigError("buffer.reservoir", f"must be an integer >= 0, got {capacity!r}")
        self.capacity = capacity
        self.seen = 0
        self._items: list[Sample] = []
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def add(self, items: Iterable[Sample]) -> None:
        with self._lock:
            for item in items:
                self.seen += 1
                if len(self._items) < self.capacity:
                    self._items.append(item)
                else:
                    j = self._rng.randrange(self.seen)
                    if j < self.capacity:
                        self._items[j] = item

    def sample(self, n: int) -> list[Sample]:
        """Up to ``n`` distinct items drawn uniformly."""
        with self._lock:
            k = min(n, len(self._items))
            return self._rng.sample(self._items, k) if k > 0 else []


class Buffer(ABC):
    """Fresh samples in, mini-batches out. Thread-safe."""

    def __init__(self, reservoir: int = 2000, seed: int = 0) -> None:
        self.reservoir = Reservoir(reservoir, seed)

    @abstractmethod
    def put_many(self, samples: Iterable[Sample]) -> int:
        """Add samples; returns how many were accepted. Never blocks on a full buffer."""

    def put(self, sample: Sample) -> None:
        self.put_many([sample])

    @abstractmethod
    def take(self, n: int, timeout_s: float = 0.0, linger_s: float = 0.0) -> Taken:
        """Up to ``n`` fresh samples, waiting at most ``timeout_s`` for the first and then at most ``linger_s`` more
        for the batch to fill (so a trickle of traffic still makes full mini-batches)."""

    @abstractmethod
    def ack(self, taken: Taken) -> None:
        """Forget ``taken`` for good: call after the step that used them."""

    def replay(self, n: int) -> list[Sample]:
        """Up to ``n`` older samples from the reservoir."""
        return self.reservoir.sample(n)

    def wake(self) -> None:
        """Interrupt a ``take`` waiting for samples (used by ``Distiller.stop``)."""
        return None  # backends whose wait is bounded by a short timeout need nothing more

    def stats(self) -> dict[str, int]:
        return {"reservoir": len(self.reservoir), "seen": self.reservoir.seen}


class MemoryBuffer(Buffer):
    """A bounded in-process queue of fresh samples: when full, the oldest is dropped and counted in ``dropped``."""

    def __init__(self, capacity: int = 10_000, *, reservoir: int = 2000, seed: int = 0) -> None:
        super().__init__(reservoir, seed)
        positive("buffer.capacity", capacity, integer=True)
        self.capacity = capacity
        self.dropped = 0
        self.added = 0
        self._fresh: deque[Sample] = deque()
        self._cond = threading.Condition()
        self._woken = False

    def __len__(self) -> int:
        return len(self._fresh)

    def put_many(self, samples: Iterable[Sample]) -> int:
        count = 0
        with self._cond:
            for sample in samples:
                if len(self._fresh) >= self.capacity:
                    self._fresh.popleft()
                    self.dropped += 1
                self._fresh.append(sample)
                count += 1
            self.added += count
            if count:
                self._cond.notify_all()
        return count

    def take(self, n: int, timeout_s: float = 0.0, linger_s: float = 0.0) -> Taken:
        with self._cond:
            if not self._fresh and timeout_s > 0 and not self._woken:
                self._cond.wait_for(lambda: bool(self._fresh) or self._woken, timeout=timeout_s)
            if self._fresh and len(self._fresh) < n and linger_s > 0 and not self._woken:
                self._cond.wait_for(lambda: len(self._fresh) >= n or self._woken, timeout=linger_s)
            self._woken = False
            out = [self._fresh.popleft() for _ in range(min(n, len(self._fresh)))]
        return Taken(out)

    def ack(self, taken: Taken) -> None:
        return None  # an in-process sample is gone once taken

    def wake(self) -> None:
        with self._cond:
            self._woken = True
            self._cond.notify_all()

    def stats(self) -> dict[str, int]:
        return {**super().stats(), "fresh": len(self._fresh), "added": self.added, "dropped": self.dropped}


def _priority(sample: Sample) -> float:
    p = sample.meta.get("p", 0.0) if sample.meta else 0.0
    return float(p) if isinstance(p, (int, float)) else 0.0


class PriorityBuffer(MemoryBuffer):
    """A ``MemoryBuffer`` for a trainer that may fall behind: while more than ``backlog`` samples wait, ``take``
    hands out the highest-priority ones first (``meta["p"]``: the feeder gives a disagreement between a cheaper tier
    and the teacher 1, plus the teacher's uncertainty, 1 - its top probability), and a full buffer evicts the
    lowest-priority samples instead of the oldest. Below the backlog it is first in, first out."""

    def __init__(self, capacity: int = 10_000, *, reservoir: int = 2000, seed: int = 0, backlog: int = 256,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(capacity, reservoir=reservoir, seed=seed)
        positive("buffer.backlog", backlog, integer=True)
        self.backlog = backlog
        self.clock = clock
        self.prioritised = 0

    def put_many(self, samples: Iterable[Sample]) -> int:
        items = list(samples)
        with self._cond:
            self._fresh.extend(items)
            self.added += len(items)
            excess = len(self._fresh) - self.capacity
            if excess > 0:
                pri = np.fromiter((_priority(s) for s in self._fresh), dtype=np.float64, count=len(self._fresh))
                drop = set(np.argpartition(pri, excess - 1)[:excess].tolist()) if excess < len(pri) else set(
                    range(len(pri)))
                self._fresh = deque(s for i, s in enumerate(self._fresh) if i not in drop)
                self.dropped += excess
            if items:
                self._cond.notify_all()
        return len(items)

    def take(self, n: int, timeout_s: float = 0.0, linger_s: float = 0.0) -> Taken:
        with self._cond:
            if len(self._fresh) <= self.backlog:
                return super().take(n, timeout_s, linger_s)
            pri = np.fromiter((_priority(s) for s in self._fresh), dtype=np.float64, count=len(self._fresh))
            top = set(np.argpartition(-pri, n - 1)[:n].tolist()) if n < len(pri) else set(range(len(pri)))
            out = [s for i, s in enumerate(self._fresh) if i in top]
            self._fresh = deque(s for i, s in enumerate(self._fresh) if i not in top)
            self.prioritised += len(out)
            self._woken = False
        return Taken(out)

    def lag_s(self) -> float:
        """Seconds since the oldest waiting sample arrived (its ``meta["t"]``); 0 when none waits."""
        with self._cond:
            if not self._fresh:
                return 0.0
            t = self._fresh[0].meta.get("t") if self._fresh[0].meta else None
        return max(0.0, self.clock() - float(t)) if isinstance(t, (int, float)) else 0.0

    def stats(self) -> dict[str, int]:
        return {**super().stats(), "prioritised": self.prioritised}
