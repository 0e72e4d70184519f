"""In-process single flight: concurrent identical requests cause one computation; the others wait for its result.

``SingleFlight`` works inside one process, for threads (``do``) and asyncio tasks (``ado``) alike: both share one
table of flights, each a ``concurrent.futures.Future``, so a thread may wait on a task's flight and the reverse.

Protocol for a key:
1. The first caller becomes the leader. Before computing it calls ``recheck()`` (a cache lookup), because another
   leader may have finished and cached the answer between the caller's own miss and its arrival here; a non-None
   recheck result is returned without computing. ``epoch`` (the value of ``completed`` the caller read before its
   own miss) skips the recheck when no flight has finished since.
2. Callers that arrive while the leader runs wait for its result.
3. If the leader's computation raises an ``Exception``, every waiter receives that same exception (like
   ``concurrent.futures``): a failing tier is then called once per stampede, not once per waiter. If the leader
   is cancelled or interrupted (a ``BaseException`` such as ``asyncio.CancelledError``), its waiters do not
   inherit that: they start over, and one of them becomes the new leader.
4. ``timeout_s`` (None: wait as long as the leader takes) bounds a wait; a waiter that times out computes itself.

One implementation, two shells: the protocol is written once, as a generator (``_flow``) that yields what it needs
done — compute, recheck, wait on a flight, and for ``RedisSingleFlight`` take or release a lock and sleep — and
receives the result (or the exception, thrown in). ``do_outcome`` drives it with plain calls, ``ado_outcome`` with
awaits; neither holds any decision of its own. ``RedisSingleFlight`` (``tierswitch.cache.redis_flight``) replaces
only the leader's step.

Call ``do`` from threads and ``ado`` from coroutines: a ``do`` inside a coroutine would block the event loop that
an async leader of the same key needs.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Awaitable, Callable, Generator, Hashable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Literal, NamedTuple, TypeVar

from tierswitch.errors import ConfigError

__all__ = ["Compute", "Effect", "Flow", "Outcome", "Recheck", "Role", "SingleFlight", "Wait"]

T = TypeVar("T")
Role = Literal["leader", "waiter", "recheck"]


class Outcome(NamedTuple):
    """A flight's value and how this caller got it: ``leader`` (it computed), ``waiter`` (shared another caller's
    computation, in this process or another) or ``recheck`` (found by the recheck, nothing computed)."""

    value: Any
    role: Role


# -- the effects the protocol asks its shell to perform ------------------------------------------------------------
class Effect:
    """Something the protocol needs done; the shell performs it and sends back the result (or throws)."""

    __slots__ = ()


class _Compute(Effect):
    __slots__ = ()


class _Recheck(Effect):
    __slots__ = ()


Compute = _Compute()
"""Call the caller's ``compute`` (sync, or awaited in the async shell); the reply is its value."""
Recheck = _Recheck()
"""Call the caller's ``recheck``; the reply is what it found, or None."""


class Wait(Effect):
    """Wait for another caller's flight; the reply is its value, or ``_Abandoned`` / ``_WaitTimeout`` is thrown."""

    __slots__ = ("future", "timeout_s")

    def __init__(self, future: Future[Any], timeout_s: float | None) -> None:
        self.future, self.timeout_s = future, timeout_s


Flow = Generator[Effect, Any, Outcome]


class _Abandoned(Exception):
    """Set on a flight whose leader was cancelled or interrupted: its waiters start over."""


class _WaitTimeout(Exception):
    """Thrown into the protocol when a ``Wait`` ran out of time (never confused with a compute's own timeout)."""


class _Flight:
    """One key being computed. The ``Future`` waiters block on is made only when the first waiter arrives: a
    ``concurrent.futures.Future`` costs about 6 µs to build and settle, and most flights never have a waiter."""

    __slots__ = ("future",)

    def __init__(self) -> None:
        self.future: Future[Any] | None = None


class SingleFlight:
    """In-process single flight over hashable keys (thread-safe and asyncio-safe).

    ``timeout_s`` bounds how long a waiter waits for a leader before computing itself. Counters (``leaders``,
    ``shared``, ``rechecked``, ``timeouts``, ``completed``) say how much work was saved.
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

    # -- the two shells -------------------------------------------------------------------------------------
    def do(self, key: Hashable, compute: Callable[[], T], recheck: Callable[[], T | None] | None = None) -> T:
        """The value of ``compute()`` for ``key``, computed once however many threads ask at the same time."""
        value: T = self.do_outcome(key, compute, recheck).value
        return value

    def do_outcome(
        self,
        key: Hashable,
        compute: Callable[[], T],
        recheck: Callable[[], T | None] | None = None,
        epoch: int | None = None,
    ) -> Outcome:
        """Like ``do``, and say whether this caller computed, waited or found the value by rechecking.

        ``epoch`` is the value of ``completed`` the caller read before its own cache miss: when no flight has
        finished since, no other leader can have cached this key in between, and the recheck is skipped.
        """
        flow = self._flow(key, recheck is not None, epoch)
        reply: Any = None
        error: BaseException | None = None
        while True:
            try:
                effect = flow.send(reply) if error is None else flow.throw(error)
            except StopIteration as done:
                result: Outcome = done.value
                return result
            reply, error = None, None
            try:
                if effect is Compute:
                    reply = compute()
                elif effect is Recheck:
                    reply = recheck() if recheck is not None else None
                else:
                    reply = self._perform(effect)
            except BaseException as exc:  # thrown into the protocol, which decides (and re-raises)
                error = exc

    async def ado(
        self,
        key: Hashable,
        compute: Callable[[], Awaitable[T]],
        recheck: Callable[[], T | None | Awaitable[T | None]] | None = None,
    ) -> T:
        """The awaited value of ``compute()`` for ``key``, computed once however many tasks (or threads) ask."""
        value: T = (await self.ado_outcome(key, compute, recheck)).value
        return value

    async def ado_outcome(
        self,
        key: Hashable,
        compute: Callable[[], Awaitable[T]],
        recheck: Callable[[], T | None | Awaitable[T | None]] | None = None,
        epoch: int | None = None,
    ) -> Outcome:
        """``do_outcome`` for coroutines: ``compute`` is awaited, ``recheck`` may be sync or async."""
        flow = self._flow(key, recheck is not None, epoch)
        reply: Any = None
        error: BaseException | None = None
        while True:
            try:
                effect = flow.send(reply) if error is None else flow.throw(error)
            except StopIteration as done:
                result: Outcome = done.value
                return result
            reply, error = None, None
            try:
                if effect is Compute:
                    reply = await compute()
                elif effect is Recheck:
                    reply = await maybe_await(recheck()) if recheck is not None else None
                else:
                    reply = await self._aperform(effect)
            except BaseException as exc:
                error = exc

    def _perform(self, effect: Effect) -> Any:
        """Do one effect other than Compute/Recheck, blocking (subclasses add their own)."""
        if isinstance(effect, Wait):
            try:
                return effect.future.result(timeout=effect.timeout_s)
            except FutureTimeout:
                raise _WaitTimeout() from None
        raise TypeError(f"unknown single-flight effect {effect!r}")

    async def _aperform(self, effect: Effect) -> Any:
        """``_perform`` for the async shell."""
        if isinstance(effect, Wait):
            # shield: cancelling this waiter must not cancel the shared flight
            waiting = asyncio.shield(asyncio.wrap_future(effect.future))
            try:
                if effect.timeout_s is None:
                    return await waiting
                return await asyncio.wait_for(waiting, effect.timeout_s)
            except asyncio.TimeoutError:
                raise _WaitTimeout() from None
        raise TypeError(f"unknown single-flight effect {effect!r}")

    # -- the protocol, written once -------------------------------------------------------------------------
    def _flow(self, key: Hashable, has_recheck: bool, epoch: int | None) -> Flow:
        """Lead, or wait and share, or (abandoned) start over, or (timed out) compute alone."""
        while True:
            future = self._join(key)
            if future is None:
                return (yield from self._lead(key, has_recheck, epoch))
            try:
                value = yield Wait(future, self.timeout_s)
            except _Abandoned:
                continue
            except _WaitTimeout:
                self._count("timeouts")
                return Outcome((yield Compute), "leader")
            return Outcome(value, "waiter")

    def _lead(self, key: Hashable, has_recheck: bool, epoch: int | None) -> Flow:
        """Run the leader's step and publish its result (or failure) to the waiters."""
        try:
            outcome = yield from self._leader_step(key, has_recheck, epoch)
        except Exception as exc:
            self._finish(key, exc=exc)
            raise
        except BaseException:  # cancelled or interrupted: the waiters start over
            self._finish(key, exc=_Abandoned())
            raise
        self._finish(key, value=outcome.value)
        return outcome

    def _leader_step(self, key: Hashable, has_recheck: bool, epoch: int | None) -> Flow:
        """Recheck (unless nothing finished since ``epoch``), then compute. ``RedisSingleFlight`` replaces this."""
        if has_recheck and (epoch is None or epoch != self.completed):
            found = yield Recheck
            if found is not None:
                self._count("rechecked")
                return Outcome(found, "recheck")
        return Outcome((yield Compute), "leader")

    # -- the flight table -----------------------------------------------------------------------------------
    def _join(self, key: Hashable) -> Future[Any] | None:
        """Lead a new flight for ``key`` (None) or wait on the running one (its future)."""
        with self._lock:
            flight = self._flights.get(key)
            if flight is not None:
                self.shared += 1
                if flight.future is None:
                    flight.future = Future()
                    flight.future.set_running_or_notify_cancel()  # running: no waiter can cancel it
                return flight.future
            self._flights[key] = _Flight()
            self.leaders += 1
            return None

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
