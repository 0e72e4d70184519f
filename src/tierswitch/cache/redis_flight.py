"""``RedisSingleFlight``: single flight across processes, via a short Redis lock per key.

Builds on the in-process ``SingleFlight`` (``tierswitch.cache.singleflight``, whose protocol this follows): threads
and tasks of one process first share one in-process flight, whose leader then takes a Redis lock (``SET NX PX``).
The lock holder computes, processes that find the lock held poll ``recheck()`` until the holder's result is in the
cache (or the lock frees up and they take it), and after ``wait_timeout_s`` compute themselves rather than fail.
Redis is reached only through ``RedisCache.run``, so redis-py is not imported here.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import TYPE_CHECKING, Any, TypeVar

from tierswitch.cache.singleflight import Outcome, SingleFlight, maybe_await
from tierswitch.errors import CacheError
from tierswitch.validation import positive

if TYPE_CHECKING:
    from tierswitch.cache.redis import RedisCache

__all__ = ["RedisSingleFlight"]

T = TypeVar("T")

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
        since: int | None = None,
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
            found = await maybe_await(recheck()) if recheck is not None and held is not None else None
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


def _unwrap(outer: Outcome) -> Outcome:
    """The in-process layer's value is the cross-process layer's Outcome; an in-process waiter stays a waiter."""
    inner: Outcome = outer.value
    return Outcome(inner.value, "waiter") if outer.role == "waiter" else inner
