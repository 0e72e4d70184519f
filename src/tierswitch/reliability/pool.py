"""A bounded pool of daemon threads, so a caller can stop waiting for a call at a deadline.

A Python thread cannot be killed: when a call overruns its timeout, the caller stops waiting. A call that had not
started yet is cancelled (it never runs); a call already running is *abandoned* — it keeps its thread until it
returns by itself, and its result is dropped. Three bounds keep that safe:

- at most ``workers`` threads per pool, so a tier sees at most that many concurrent calls (a bulkhead) and the
  process never holds more threads than that for it, however many requests hang;
- at most ``max_queue`` calls waiting for a thread; past that, ``submit`` refuses at once (a tier whose every
  worker is stuck fails fast instead of making every caller wait out its whole timeout);
- the threads are daemons and never joined, so a call hung forever cannot stop the interpreter from exiting
  (``concurrent.futures.ThreadPoolExecutor`` joins its workers at exit, which would hang the process).

Threads start lazily on ``submit``, never in ``__init__``.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from tierswitch.errors import ConfigError
from tierswitch.validation import describe

__all__ = ["CallPool"]

T = TypeVar("T")


class CallPool:
    """Run calls on at most ``workers`` daemon threads with at most ``max_queue`` waiting; see the module docstring."""

    def __init__(self, workers: int = 8, max_queue: int = 256, *, name: str = "tierswitch-call") -> None:
        for field, value, low in (("workers", workers, 1), ("max_queue", max_queue, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(field, f"must be an integer >= {low}, got {describe(value)}")
        self.workers = workers
        self.max_queue = max_queue
        self.name = name
        self._cond = threading.Condition()
        self._queue: deque[tuple[Callable[[], Any], Future[Any]]] = deque()
        self._threads = 0
        self._idle = 0
        self._running = 0
        self._closing = False
        self._abandoned: set[Future[Any]] = set()
        self.cancelled = 0  # calls whose caller gave up before they started (they never ran)
        self.abandoned_total = 0  # calls whose caller gave up while they ran
        self.returned_late = 0  # abandoned calls that did return eventually (their result was dropped)
        self.refused = 0  # submits refused because the queue was full

    @property
    def hung(self) -> int:
        """Abandoned calls that have not returned yet."""
        with self._cond:
            return len(self._abandoned)

    @property
    def busy(self) -> int:
        """Calls running or waiting for a thread."""
        with self._cond:
            return self._running + len(self._queue)

    def submit(self, fn: Callable[[], T]) -> Future[T] | None:
        """Queue ``fn()`` and return its future, or None when ``max_queue`` calls already wait."""
        future: Future[T] = Future()
        with self._cond:
            waiting = len(self._queue)
            if waiting >= self.max_queue:  # a future cancelled by its holder (not by give_up) holds no place either
                self._queue = deque(item for item in self._queue if not item[1].cancelled())
                waiting = len(self._queue)
            can_start = self._idle > waiting or self._threads < self.workers
            if not can_start and waiting >= self.max_queue:
                self.refused += 1
                return None
            self._queue.append((fn, future))
            if self._idle <= waiting and self._threads < self.workers:  # no idle thread left for this call
                self._threads += 1
                threading.Thread(target=self._work, name=f"{self.name}-{self._threads}", daemon=True).start()
            else:
                self._cond.notify()
        return future

    def give_up(self, future: Future[Any]) -> bool:
        """The caller stops waiting for ``future``. True when the call never started (it is cancelled), False
        when it is running (it is abandoned: its result, whenever it comes, is dropped)."""
        with self._cond:  # a worker starts a queued call under this lock too: it runs, or it is cancelled here
            if future.cancel():
                self.cancelled += 1
                # out of the queue at once: it holds no place and no longer counts as queued or busy
                self._queue = deque(item for item in self._queue if item[1] is not future)
                return True
            if not future.done():
                self._abandoned.add(future)
                self.abandoned_total += 1
        return False

    def _work(self) -> None:
        while True:
            with self._cond:
                self._idle += 1
                while not self._queue and not self._closing:
                    self._cond.wait()
                self._idle -= 1
                if not self._queue:  # closing and nothing left to do
                    self._threads -= 1
                    return
                fn, future = self._queue.popleft()
                if not future.set_running_or_notify_cancel():
                    continue  # cancelled while queued: its caller already gave up
                self._running += 1
            try:
                future.set_result(fn())
            except BaseException as exc:  # handed to the waiting caller, like concurrent.futures
                future.set_exception(exc)
            finally:
                with self._cond:
                    self._running -= 1
                    if future in self._abandoned:
                        self._abandoned.discard(future)
                        self.returned_late += 1

    def close(self) -> None:
        """Let idle threads exit once the queue is empty. Calls still running (hung ones included) finish on their
        own daemon threads."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()

    def snapshot(self) -> dict[str, int]:
        with self._cond:
            return {"threads": self._threads, "running": self._running, "queued": len(self._queue),
                    "hung": len(self._abandoned), "abandoned": self.abandoned_total, "cancelled": self.cancelled,
                    "returned_late": self.returned_late, "refused": self.refused}
