"""Per-key rate limits and cost budgets, in fixed windows: in memory for one process, in Redis for a fleet.

Redis keys are ``{namespace}:gw:{KEY_NAME}:rate:WINDOW`` and ``...:budget:WINDOW`` (``INCR``/``INCRBYFLOAT`` then
``EXPIRE NX``, one pipelined round trip); the braces hash-tag a key's counters to one Redis Cluster slot. Redis
being unreachable never fails a request: the limiter counts in memory (per process) until Redis answers again.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

from tierswitch.serve.errors import ApiError
from tierswitch.serve.settings import KeyLimits, Limit

__all__ = ["MemoryLimiter", "RedisLimiter"]

log = logging.getLogger("tierswitch.serve")


def _window(limit: Limit, now: float) -> tuple[int, float]:
    """(index of the window holding ``now``, seconds until it ends)."""
    index = int(now // limit.per_s)
    return index, (index + 1) * limit.per_s - now


def _too_many(what: str, limit: Limit, retry_after: float, code: str) -> ApiError:
    return ApiError(429, f"{what} over its limit ({limit.amount:g} per {limit.per_s:g}s); retry after "
                         f"{retry_after:.1f}s", code, {"retry-after": str(max(1, math.ceil(retry_after)))})


class MemoryLimiter:
    """Windows counted in this process (a fleet without Redis limits each process separately)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._counts: dict[tuple[str, str, int], float] = {}

    def _add(self, key: tuple[str, str, int], amount: float) -> float:
        if len(self._counts) > 100_000:  # old windows: drop them all, the current ones refill at once
            self._counts.clear()
        value = self._counts.get(key, 0.0) + amount
        self._counts[key] = value
        return value

    async def admit(self, name: str, limits: KeyLimits) -> None:
        now = self.clock()
        if limits.budget is not None:
            index, left = _window(limits.budget, now)
            if self._counts.get((name, "budget", index), 0.0) >= limits.budget.amount:
                raise _too_many("the key's cost budget is", limits.budget, left, "budget_exceeded")
        if limits.rate is not None:
            index, left = _window(limits.rate, now)
            if self._add((name, "rate", index), 1.0) > limits.rate.amount:
                raise _too_many("the key's request rate is", limits.rate, left, "rate_limit_exceeded")

    async def spend(self, name: str, limits: KeyLimits, cost: float) -> None:
        if limits.budget is not None and cost > 0:
            self._add((name, "budget", _window(limits.budget, self.clock())[0]), cost)

    async def close(self) -> None:
        return None


class RedisLimiter:
    """Windows shared by every gateway on one Redis; a ``MemoryLimiter`` stands in while Redis is unreachable."""

    def __init__(self, url: str, namespace: str, *, timeout_s: float = 0.25, backoff_s: float = 1.0,
                 clock: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.url = url
        self.namespace = namespace
        self.timeout_s = timeout_s
        self.backoff_s = backoff_s
        self.clock = clock
        self.monotonic = monotonic
        self.local = MemoryLimiter(clock)
        self._client: Any = None
        self._down_until = 0.0

    def _redis(self) -> Any:
        if self._client is None:  # built in the serving event loop (redis.asyncio clients belong to one loop)
            import redis.asyncio as aioredis

            self._client = aioredis.Redis.from_url(self.url, socket_timeout=self.timeout_s,
                                                   socket_connect_timeout=self.timeout_s)
        return self._client

    def _key(self, name: str, what: str, index: int) -> str:
        return f"{self.namespace}:gw:{{{name}}}:{what}:{index}"

    async def _pipeline(self, ops: list[tuple[str, str, float, float]]) -> list[Any] | None:
        """Run (op, key, amount, ttl) updates in one round trip; None when Redis is unavailable."""
        if self.monotonic() < self._down_until:
            return None
        try:
            pipe = self._redis().pipeline(transaction=False)
            for op, key, amount, ttl in ops:
                if op == "get":
                    pipe.get(key)
                    continue
                if op == "incr":
                    pipe.incr(key)
                else:
                    pipe.incrbyfloat(key, amount)
                pipe.expire(key, max(1, math.ceil(ttl)) + 1, nx=True)
            return list(await pipe.execute())
        except Exception as exc:  # any redis or socket failure: count locally for a while, warn once per outage
            if self._down_until == 0.0 or self.monotonic() - self._down_until > self.backoff_s:
                log.warning("gateway limits: redis at %s unavailable (%s: %s); counting in this process",
                            self.url.split("@")[-1], type(exc).__name__, exc)
            self._down_until = self.monotonic() + self.backoff_s
            return None

    async def admit(self, name: str, limits: KeyLimits) -> None:
        now = self.clock()
        ops: list[tuple[str, str, float, float]] = []
        if limits.budget is not None:
            b_index, b_left = _window(limits.budget, now)
            ops.append(("get", self._key(name, "budget", b_index), 0.0, 0.0))
        if limits.rate is not None:
            r_index, r_left = _window(limits.rate, now)
            ops.append(("incr", self._key(name, "rate", r_index), 1.0, limits.rate.per_s))
        if not ops:
            return
        results = await self._pipeline(ops)
        if results is None:
            await self.local.admit(name, limits)
            return
        if limits.budget is not None and float(results[0] or 0.0) >= limits.budget.amount:
            raise _too_many("the key's cost budget is", limits.budget, b_left, "budget_exceeded")
        if limits.rate is not None and int(results[-2]) > limits.rate.amount:
            raise _too_many("the key's request rate is", limits.rate, r_left, "rate_limit_exceeded")

    async def spend(self, name: str, limits: KeyLimits, cost: float) -> None:
        if limits.budget is None or cost <= 0:
            return
        index = _window(limits.budget, self.clock())[0]
        if await self._pipeline([("incrf", self._key(name, "budget", index), cost, limits.budget.per_s)]) is None:
            await self.local.spend(name, limits, cost)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
