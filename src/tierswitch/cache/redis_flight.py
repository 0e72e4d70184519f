"""``RedisSingleFlight``: single flight across processes, via a short Redis lock per key.

Builds on the in-process ``SingleFlight`` (``tierswitch.cache.singleflight``, whose protocol this follows): threads
and tasks of one process first share one in-process flight, whose leader then takes a Redis lock (``SET NX PX``).
The lock holder computes, processes that find the lock held poll ``recheck()`` until the holder's result is in the
cache (or the lock frees up and they take it), and after ``wait_timeout_s`` compute themselves rather than fail.
The lock is released only by its holder (a token compared in a Lua script), so a lock that expired and was taken
by another process is left alone.

Only the leader's step differs from ``SingleFlight``, and it is written once, as a generator yielding effects
(``Acquire``, ``Release``, ``Sleep`` besides the in-process ones); the sync shell performs them with the cache's
redis client, the async shell with its ``redis.asyncio`` client. Redis is reached only through the cache's
``command`` / ``acommand`` (so through its breaker), and redis-py is not imported here.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import TYPE_CHECKING, Any

from tierswitch.cache.singleflight import Compute, Effect, Flow, Outcome, Recheck, SingleFlight
from tierswitch.errors import CacheError
from tierswitch.validation import positive

if TYPE_CHECKING:
    from tierswitch.cache.redis import RedisCache

__all__ = ["Acquire", "RedisSingleFlight", "Release", "Sleep"]

# Delete the lock only if we still own it (our token): a lock that expired and was taken by another process stays.
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"


class Acquire(Effect):
    """Try ``SET name token NX PX ttl``; the reply is True (ours), False (held by another) or None (Redis failed)."""

    __slots__ = ("name", "token", "ttl_ms")

    def __init__(self, name: str, token: str, ttl_ms: int) -> None:
        self.name, self.token, self.ttl_ms = name, token, ttl_ms


class Release(Effect):
    """Delete the lock ``name`` if it still holds ``token``; failures are ignored (the lock expires by itself)."""

    __slots__ = ("name", "token")

    def __init__(self, name: str, token: str) -> None:
        self.name, self.token = name, token


class Sleep(Effect):
    """Wait ``seconds`` before polling again."""

    __slots__ = ("seconds",)

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds


class RedisSingleFlight(SingleFlight):
    """Single flight across processes: in-process flights first, then a short Redis lock per key.

    The lock holder rechecks the cache (another process may have just finished) and then computes; a process that
    finds the lock held polls ``recheck()`` every ``poll_s`` until the holder's result appears, takes the lock if
    it frees up without a result (the holder failed), and computes itself after ``wait_timeout_s``. Lock keys are
    ``{cache.namespace}:lock:{key}``, outside the results space, and expire after ``lock_ttl_s``. Every Redis call
    goes through the cache's breaker: with Redis down, stalled (a timeout opens the breaker at once) or its breaker
    open, the caller just computes. Without a ``recheck`` a waiting process cannot see the result and computes once
    the lock frees. ``clock``, ``sleep`` and ``asleep`` are injectable.
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
        self.lock_waits = 0  # flights that found another process holding the key's lock
        self.lock_timeouts = 0  # flights that gave up waiting for it and computed themselves

    # -- the leader's step, across processes ----------------------------------------------------------------
    def _leader_step(self, key: Hashable, has_recheck: bool, epoch: int | None) -> Flow:
        # No in-process epoch shortcut: ``epoch`` cannot tell whether another process finished, so the leader
        # rechecks once it holds the lock, which covers both races.
        name, token = f"{self.cache.namespace}:lock:{key}", os.urandom(16).hex()
        deadline = self._clock() + self.wait_timeout_s
        waited = False
        while True:
            try:
                held = yield Acquire(name, token, self.lock_ttl_ms)
            except GeneratorExit:
                raise
            except BaseException:  # cancelled around the SET: it may have taken the lock, so give it back
                yield Release(name, token)
                raise
            found = (yield Recheck) if has_recheck and held is not None else None
            if found is not None:
                if held:
                    yield Release(name, token)
                return Outcome(found, "waiter" if waited else "recheck")
            if held is None or held:  # Redis unusable (compute without a lock), or the lock is ours
                try:
                    value = yield Compute
                except GeneratorExit:
                    raise  # the flow was dropped mid-flight: the lock expires by itself
                except BaseException:
                    if held:
                        yield Release(name, token)
                    raise
                if held:
                    yield Release(name, token)
                return Outcome(value, "leader")
            if not waited:
                waited = True
                self._count("lock_waits")
            if self._clock() >= deadline:
                self._count("lock_timeouts")
                return Outcome((yield Compute), "leader")
            yield Sleep(self.poll_s)

    # -- performing the lock effects ------------------------------------------------------------------------
    def _perform(self, effect: Effect) -> Any:
        cache = self.cache
        try:
            if isinstance(effect, Acquire):
                return bool(cache.command("set", effect.name, effect.token, nx=True, px=effect.ttl_ms))
            if isinstance(effect, Release):
                cache.command("eval", _RELEASE, 1, effect.name, effect.token)
                return None
        except CacheError:
            return None  # no lock (compute without one), or a lock left to expire
        if isinstance(effect, Sleep):
            self._sleep(effect.seconds)
            return None
        return super()._perform(effect)

    async def _aperform(self, effect: Effect) -> Any:
        cache = self.cache
        try:
            if isinstance(effect, Acquire):
                return bool(await cache.acommand("set", effect.name, effect.token, nx=True, px=effect.ttl_ms))
            if isinstance(effect, Release):
                await cache.acommand("eval", _RELEASE, 1, effect.name, effect.token)
                return None
        except CacheError:
            return None
        if isinstance(effect, Sleep):
            await self._asleep(effect.seconds)
            return None
        return await super()._aperform(effect)
