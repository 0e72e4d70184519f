"""Single flight: concurrent identical requests cause one computation; the others wait for its result.

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

``RedisSingleFlight`` extends this across processes with a short Redis lock (``SET NX PX``): the lock holder
computes, processes that find the lock held poll ``recheck()`` until the holder's result is in the cache (or the lock
frees up and they take it), and after ``wait_timeout_s`` compute themselves rather than fail.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import threading
import time
from collections.abc import Awaitable, Callable, Hashable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, TypeVar

from tierswitch.config import positive
from tierswitch.errors import CacheError, ConfigError

if TYPE_CHECKING:
    from tierswitch.cache.redis import RedisCache

__all__ = ["Outcome", "RedisSingleFlight", "Role", "SingleFlight"]

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
    # ado_outcome/_alead (and RedisSingleFlight._aacross) mirror their sync twins line for line on purpose: the
    # awaits are the whole difference, and one shared body would hide the failure and lock-release paths.
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
    ) -> Outcome:
        """Like ``ado``, and say whether this caller computed, waited or found the value by rechecking."""
        while True:
            flight, leader = self._join(key)
            if leader:
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
            found = await _maybe_await(recheck()) if recheck is not None else None
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


# Delete the lock only if we still own it (our token): a lock that expired and was taken by another process stays.
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"


class RedisSingleFlight(SingleFlight):
    """Single flight across processes: in-process flights first, then a short Redis lock per key.

    The lock holder rechecks the cache (another process may have just finished) and then computes; a process that
    finds the lock held polls ``recheck()`` every ``poll_s`` until the holder's result appears, takes the lock if
    it frees up without a result (the holder failed), and computes itself after ``wait_timeout_s``. Lock keys are
    ``{cache.namespace}:lock:{key}``, outside the results space, and expire after ``lock_ttl_s``. Every Redis call
    goes through ``cache.run``: with Redis down (or its breaker open) the caller just computes. Without a
    ``recheck`` a waiting process cannot see the result and computes once the lock frees. ``clock``, ``sleep`` and
    ``asleep`` are injectable.
    """

    def __init__(
        self,
        cache: RedisCache,
        *,
        lock_ttl_s: float = 10.0,
        wait_timeout_s: float = 10.0,
        poll_s: float = 0.01,
        timeout_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        asleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        super().__init__(timeout_s)
        for field, value in (("lock_ttl_s", lock_ttl_s), ("wait_timeout_s", wait_timeout_s), ("poll_s", poll_s)):
            positive(f"single_flight.{field}", value)
        self.cache = cache
        self.lock_ttl_ms = max(1, int(lock_ttl_s * 1000))
        self.wait_timeout_s = wait_timeout_s
        self.poll_s = poll_s
        self._clock, self._sleep, self._asleep = clock, sleep, asleep
        self._release_script: Any = None
        self.lock_waits = 0  # flights that found another process holding the key's lock
        self.lock_timeouts = 0  # flights that gave up waiting for it and computed themselves

    def do_outcome(
        self,
        key: Hashable,
        compute: Callable[[], T],
        recheck: Callable[[], T | None] | None = None,
        since: int | None = None,
    ) -> Outcome:
        # No in-process recheck: the cross-process step rechecks once it holds the lock, which covers both races
        # (``since`` cannot tell whether another process finished, so it is not used here).
        return _unwrap(super().do_outcome(key, lambda: self._across(key, compute, recheck)))

    async def ado_outcome(
        self,
        key: Hashable,
        compute: Callable[[], Awaitable[T]],
        recheck: Callable[[], T | None | Awaitable[T | None]] | None = None,
    ) -> Outcome:
        async def across() -> Outcome:
            return await self._aacross(key, compute, recheck)

        return _unwrap(await super().ado_outcome(key, across))

    def _across(self, key: Hashable, compute: Callable[[], T], recheck: Callable[[], T | None] | None) -> Outcome:
        name, token = f"{self.cache.namespace}:lock:{key}", os.urandom(16).hex()
        deadline = self._clock() + self.wait_timeout_s
        waited = False
        while True:
            held = self._acquire(name, token)
            found = recheck() if recheck is not None and held is not None else None
            if found is not None:
                if held:
                    self._release(name, token)
                return Outcome(found, "waiter" if waited else "recheck")
            if held is None or held:  # Redis unusable (compute without a lock), or the lock is ours
                try:
                    return Outcome(compute(), "leader")
                finally:
                    if held:
                        self._release(name, token)
            waited = self._note_wait(waited)
            if self._clock() >= deadline:
                self._count("lock_timeouts")
                return Outcome(compute(), "leader")
            self._sleep(self.poll_s)

    async def _aacross(
        self,
        key: Hashable,
        compute: Callable[[], Awaitable[T]],
        recheck: Callable[[], T | None | Awaitable[T | None]] | None,
    ) -> Outcome:
        name, token = f"{self.cache.namespace}:lock:{key}", os.urandom(16).hex()
        deadline = self._clock() + self.wait_timeout_s
        waited = False
        while True:
            held = self._acquire(name, token)
            found = await _maybe_await(recheck()) if recheck is not None and held is not None else None
            if found is not None:
                if held:
                    self._release(name, token)
                return Outcome(found, "waiter" if waited else "recheck")
            if held is None or held:
                try:
                    return Outcome(await compute(), "leader")
                finally:
                    if held:
                        self._release(name, token)
            waited = self._note_wait(waited)
            if self._clock() >= deadline:
                self._count("lock_timeouts")
                return Outcome(await compute(), "leader")
            await self._asleep(self.poll_s)

    def _note_wait(self, waited: bool) -> bool:
        if not waited:
            self._count("lock_waits")
        return True

    def _acquire(self, name: str, token: str) -> bool | None:
        """True: we hold the lock; False: another process does; None: Redis failed (compute without a lock)."""
        try:
            return bool(self.cache.run(self.cache.client.set, name, token, nx=True, px=self.lock_ttl_ms))
        except CacheError:
            return None

    def _release(self, name: str, token: str) -> None:
        if self._release_script is None:
            self._release_script = self.cache.client.register_script(_RELEASE)
        try:
            self.cache.run(self._release_script, keys=[name], args=[token])
        except CacheError:
            pass  # the lock expires by itself after lock_ttl_s


def _unwrap(outer: Outcome[Any]) -> Outcome[Any]:
    """The in-process layer's value is the cross-process layer's Outcome; an in-process waiter stays a waiter."""
    inner: Outcome[Any] = outer.value
    return Outcome(inner.value, "waiter") if outer.role == "waiter" else inner


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value
