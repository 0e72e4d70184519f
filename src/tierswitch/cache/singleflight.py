"""In-process single flight: concurrent identical requests cause one computation; the others wait for its result.

``SingleFlight`` works inside one process, for threads (``do``) and asyncio tasks (``ado``) alike: both share one
table of flights, each a ``concurrent.futures.Future``, so a thread may wait on a task's flight and the reverse.

Protocol for a key:
1. The first caller becomes the leader. Before computing it calls ``recheck()`` (a cache lookup), because another
   leader may have finished and cached the answer between the caller's own miss and its arrival here; a non-None
   recheck result is returned without computing.
2. Callers that arrive while the leader runs wait for its result.
3. If the leader's computation raises an ``Exception``, every waiter receives that same exception (like
   ``concurrent.futures``): a failing tier is then called once per stampede, not once per waiter. If the leader
   is cancelled or interrupted (a ``BaseException`` such as ``asyncio.CancelledError``), its waiters do not
   inherit that: they start over, and one of them becomes the new leader.
4. ``timeout_s`` (None: wait as long as the leader takes) bounds a wait; a waiter that times out computes itself.

Call ``do`` from threads and ``ado`` from coroutines: a ``do`` inside a coroutine would block the event loop that
an async leader of the same key needs.

``RedisSingleFlight`` (in ``tierswitch.cache.redis_flight``, re-exported here) builds on this class to extend the
protocol across processes with a short Redis lock.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Awaitable, Callable, Hashable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Literal, NamedTuple, TypeVar

from tierswitch.errors import ConfigError

# RedisSingleFlight is also importable from here (see __getattr__ at the bottom)
__all__ = ["Outcome", "Role", "SingleFlight"]

T = TypeVar("T")
Role = Literal["leader", "waiter", "recheck"]


class Outcome(NamedTuple):
    """A flight's value and how this caller got it: ``leader`` (it computed), ``waiter`` (shared another caller's
    computation, in this process or another) or ``recheck`` (found by the recheck, nothing computed)."""

    value: Any
    role: Role


class _Abandoned(Exception):
    """Set on a flight whose leader was cancelled or interrupted: its waiters start over."""


class _Flight:
    """One key being computed. The ``Future`` waiters block on is made only when the first waiter arrives: a
    ``concurrent.futures.Future`` costs about 6 µs to build and settle, and most flights never have a waiter."""

    __slots__ = ("future",)

    def __init__(self) -> None:
        self.future: Future[Any] | None = None


class SingleFlight:
    """In-process single flight over hashable keys (thread-safe and asyncio-safe).

    ``timeout_s`` bounds how long a waiter waits for a leader before computing itself. Counters (``leaders``,
    ``shared``, ``rechecked``, ``timeouts``) say how much work was saved.
    """

    def __init__(self, timeout_s: float | None = None) -> None:
        if timeout_s is not None and (
            isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or not timeout_s > 0
        ):
            raise ConfigError("single_flight.timeout_s", f"must be > 0 or None, got {timeout_s!r}")
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._flights: dict[Hashable, _Flight] = {}
        self.leaders = 0
        self.completed = 0  # flights finished so far: a caller that saw no change since its own miss skips recheck
        self.shared = 0
        self.rechecked = 0
        self.timeouts = 0

    def in_flight(self) -> int:
        """How many keys are being computed now."""
        return len(self._flights)

    # -- sync -----------------------------------------------------------------------------------------------
    def do(self, key: Hashable, compute: Callable[[], T], recheck: Callable[[], T | None] | None = None) -> T:
        """The value of ``compute()`` for ``key``, computed once however many threads ask at the same time."""
        return self.do_outcome(key, compute, recheck).value

    def do_outcome(
        self,
        key: Hashable,
        compute: Callable[[], T],
        recheck: Callable[[], T | None] | None = None,
        since: int | None = None,
    ) -> Outcome:
        """Like ``do``, and say whether this caller computed, waited or found the value by rechecking.

        ``since`` is the value of ``completed`` the caller read before its own cache miss: when no flight has
        finished since, no other leader can have cached this key in between, and the recheck is skipped.
        """
        while True:
            flight, leader = self._join(key)
            if leader:
                if since is not None and since == self.completed:
                    recheck = None
                return self._lead(key, compute, recheck)
            assert flight is not None
            try:
                return Outcome(flight.result(timeout=self.timeout_s), "waiter")
            except _Abandoned:
                continue
            except FutureTimeout:
                self._count("timeouts")
                return Outcome(compute(), "leader")

    def _lead(
        self, key: Hashable, compute: Callable[[], T], recheck: Callable[[], T | None] | None
    ) -> Outcome:
        try:
            found = recheck() if recheck is not None else None
            value = compute() if found is None else found
        except Exception as exc:
            self._finish(key, exc=exc)
            raise
        except BaseException:
            self._finish(key, exc=_Abandoned())
            raise
        self._finish(key, value=value)
        if found is not None:
            self._count("rechecked")
            return Outcome(found, "recheck")
        return Outcome(value, "leader")

    # -- async ----------------------------------------------------------------------------------------------
    # ado_outcome/_alead (and RedisSingleFlight._aacross in redis_flight) mirror their sync twins line for line on
    # purpose: the awaits are the whole difference, and one shared body would hide the failure and lock-release paths.
    async def ado(
        self,
        key: Hashable,
        compute: Callable[[], Awaitable[T]],
        recheck: Callable[[], T | None | Awaitable[T | None]] | None = None,
    ) -> T:
        """The awaited value of ``compute()`` for ``key``, computed once however many tasks (or threads) ask."""
        return (await self.ado_outcome(key, compute, recheck)).value

    async def ado_outcome(
        self,
        key: Hashable,
        compute: Callable[[], Awaitable[T]],
        recheck: Callable[[], T | None | Awaitable[T | None]] | None = None,
        since: int | None = None,
    ) -> Outcome:
        """Like ``ado``, and say whether this caller computed, waited or found the value by rechecking."""
        while True:
            flight, leader = self._join(key)
            if leader:
                if since is not None and since == self.completed:
                    recheck = None
                return await self._alead(key, compute, recheck)
            # shield: cancelling this waiter must not cancel the shared flight
            assert flight is not None
            waiting = asyncio.shield(asyncio.wrap_future(flight))
            try:
                if self.timeout_s is None:
                    value = await waiting
                else:
                    value = await asyncio.wait_for(waiting, self.timeout_s)
                return Outcome(value, "waiter")
            except _Abandoned:
                continue
            except asyncio.TimeoutError:
                self._count("timeouts")
                return Outcome(await compute(), "leader")

    async def _alead(
        self,
        key: Hashable,
        compute: Callable[[], Awaitable[T]],
        recheck: Callable[[], T | None | Awaitable[T | None]] | None,
    ) -> Outcome:
        try:
            found = await maybe_await(recheck()) if recheck is not None else None
            value = await compute() if found is None else found
        except Exception as exc:
            self._finish(key, exc=exc)
            raise
        except BaseException:
            self._finish(key, exc=_Abandoned())
            raise
        self._finish(key, value=value)
        if found is not None:
            self._count("rechecked")
            return Outcome(found, "recheck")  # type: ignore[arg-type]
        return Outcome(value, "leader")

    # -- the flight table -----------------------------------------------------------------------------------
    def _join(self, key: Hashable) -> tuple[Future[Any] | None, bool]:
        """Lead a new flight for ``key`` (returns (None, True)) or wait on the running one (its future, False)."""
        with self._lock:
            flight = self._flights.get(key)
            if flight is not None:
                self.shared += 1
                if flight.future is None:
                    flight.future = Future()
                    flight.future.set_running_or_notify_cancel()  # running: no waiter can cancel it
                return flight.future, False
            self._flights[key] = _Flight()
            self.leaders += 1
            return None, True

    def _finish(self, key: Hashable, *, value: Any = None, exc: BaseException | None = None) -> None:
        # Remove the flight before publishing, so a caller arriving now starts a fresh flight (and rechecks the
        # cache, which already holds the value) instead of joining a finished one.
        with self._lock:
            flight = self._flights.pop(key, None)
            self.completed += 1
        future = flight.future if flight is not None else None
        if future is None:
            return
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(value)

    def _count(self, name: str) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)


async def maybe_await(value: Any) -> Any:
    """``value``, awaited first if it is awaitable (a recheck may be sync or async)."""
    return await value if inspect.isawaitable(value) else value


def __getattr__(name: str) -> Any:
    # RedisSingleFlight subclasses SingleFlight, so it is imported on first use rather than at the top (a cycle)
    if name == "RedisSingleFlight":
        from tierswitch.cache.redis_flight import RedisSingleFlight

        return RedisSingleFlight
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
