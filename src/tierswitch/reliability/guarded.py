"""``Guarded``: a tier wrapped with a timeout, retries for transient errors and a circuit breaker.

A ``Guarded`` tier *is* a ``Tier`` with the wrapped tier's name, cost, capabilities and version, so it drops into a
router in place of the tier it wraps. Every way it gives up raises a ``TierFailure`` subclass, so the router's
fallback takes over and the failure's message lands in the request's trace:

- ``TierTimeout``: the call overran ``timeout_s`` (the call is abandoned; see ``reliability.pool``);
- ``TierSaturated``: the tier's call queue is full (its workers are all busy or stuck);
- ``CircuitOpen``: the breaker is open, the tier is not called at all;
- the tier's own ``TierFailure``, noting how many attempts were made when it was retried.

Sync calls with a timeout run on a bounded pool of daemon threads and the caller stops waiting at the deadline;
``apredict``/``apredict_one`` use ``asyncio.wait_for`` (over the tier's own ``apredict_one`` when it has one, else over
the same pool). Without a timeout the call runs inline, with no thread hop. ``clock``, ``sleep``, ``asleep`` and
``rng`` are injected so tests control time and jitter.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, TypeVar

from tierswitch.errors import ConfigError, TierFailure, TierTimeout
from tierswitch.reliability.breaker import CircuitBreaker
from tierswitch.reliability.errors import CircuitOpen, TierSaturated
from tierswitch.reliability.pool import CallPool
from tierswitch.reliability.retry import Backoff, RetryOn, transient_predicate
from tierswitch.tiers.base import Capabilities, CostModel, RawOutput, Tier
from tierswitch.types import Prediction
from tierswitch.validation import describe, finite

__all__ = ["Guarded", "guard_all"]

T = TypeVar("T")


class Guarded(Tier):
    """``tier`` with a per-call ``timeout_s`` (None: no timeout), up to ``retries`` extra attempts for transient
    failures (see ``reliability.retry``) spaced by ``backoff``, and an optional ``breaker``.

    With a timeout, calls run on ``workers`` threads of the tier's own pool (at most that many concurrent calls:
    a bulkhead), with at most ``max_queue`` waiting; see ``reliability.pool``. ``retry_timeouts`` also retries timeouts
    (off by default: a timed-out attempt already cost ``timeout_s``, and the fallback is usually the better bet).
    ``stats`` counts calls, failures by kind, retries, timeouts and refusals, for metrics.
    """

    def __init__(
        self,
        tier: Tier,
        *,
        timeout_s: float | None = None,
        retries: int = 0,
        backoff: Backoff | None = None,
        retry_on: RetryOn = None,
        retry_timeouts: bool = False,
        breaker: CircuitBreaker | None = None,
        workers: int = 8,
        max_queue: int = 256,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        asleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        # Tier.__init__ is not called: name, cost, capabilities and version all live on the wrapped tier.
        if not isinstance(tier, Tier):
            raise ConfigError("guarded.tier", f"must be a Tier, got {type(tier).__name__}")
        if timeout_s is not None:  # finite: an infinite deadline overflows the thread wait (use None: no timeout)
            finite(f"tiers.{tier.name}.timeout_s", timeout_s, low=0.0, strict=True)
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ConfigError(f"tiers.{tier.name}.retries", f"must be an integer >= 0, got {describe(retries)}")
        self.inner = tier
        self.name = tier.name
        # apredict_one is native here (asyncio timeouts; a sync inner tier runs on the guard's own pool), so the
        # async core awaits it rather than parking an executor thread on top of the guard's.
        self.is_async = True
        self.timeout_s = None if timeout_s is None else float(timeout_s)
        self.retries = retries
        self.backoff = backoff if backoff is not None else Backoff()
        self.retry_timeouts = retry_timeouts
        self.breaker = breaker
        self.pool = CallPool(workers, max_queue, name=f"tierswitch-{tier.name}")
        self._is_transient = transient_predicate(retry_on)
        self._clock = clock
        self._sleep = sleep
        self._asleep = asleep
        self._rng = rng if rng is not None else random.Random()
        self._rng_lock = threading.Lock()
        self._stats_lock = threading.Lock()
        self.stats: Counter[str] = Counter()

    # -- the wrapped tier's identity ------------------------------------------------------------------------
    def cacheable(self, x: Any) -> bool:
        return self.inner.cacheable(x)

    @property
    def cost_model(self) -> CostModel:
        return self.inner.cost_model

    @cost_model.setter
    def cost_model(self, value: CostModel) -> None:
        self.inner.cost_model = value

    @property
    def capabilities(self) -> Capabilities:
        return self.inner.capabilities

    @capabilities.setter
    def capabilities(self, value: Capabilities) -> None:
        self.inner.capabilities = value

    @property
    def version(self) -> str:
        return self.inner.version

    def set_version(self, version: str) -> None:
        self.inner.set_version(version)

    def _serving_version(self) -> str:
        return self.inner._serving_version()

    def _predict_raw(self, batch: Sequence[Any]) -> Sequence[RawOutput]:
        return self.inner._predict_raw(batch)  # unused: predict is overridden; kept for the Tier contract

    def describe(self) -> dict[str, Any]:
        return {**self.inner.describe(), "guard": {"timeout_s": self.timeout_s, "retries": self.retries,
                                                   "breaker": None if self.breaker is None else self.breaker.state}}

    # -- sync -----------------------------------------------------------------------------------------------
    def predict(self, batch: Sequence[Any], lengths: Sequence[int] | None = None) -> list[Prediction]:
        return self._guard(lambda: self.inner.predict(batch, lengths))

    def predict_one(self, x: Any, length: int = 0) -> Prediction:
        return self._guard(lambda: self.inner.predict_one(x, length))

    def _guard(self, call: Callable[[], T]) -> T:
        attempt = 0
        while True:
            self._admit()
            try:
                result = self._timed(call)
            except TierFailure as failure:
                delay = self._after_failure(failure, attempt)
                self._sleep(delay)
                attempt += 1
                continue
            except BaseException:  # interrupted, or not the tier's failure: no verdict for the breaker
                self._release()
                raise
            self._after_success()
            return result

    def _timed(self, call: Callable[[], T]) -> T:
        if self.timeout_s is None:
            return call()
        future = self.pool.submit(call)
        if future is None:
            raise self._saturated()
        try:
            return future.result(timeout=self.timeout_s)
        except FutureTimeout:
            raise TierTimeout(self.name, self._timeout_message(self.pool.give_up(future))) from None

    # -- async ----------------------------------------------------------------------------------------------
    async def apredict(self, batch: Sequence[Any], lengths: Sequence[int] | None = None) -> list[Prediction]:
        """``predict`` for asyncio callers: the timeout is ``asyncio.wait_for``, backoff is ``asleep``."""
        return await self._aguard(lambda: self.inner.predict(batch, lengths), None)

    async def apredict_one(self, x: Any, length: int = 0) -> Prediction:
        """``predict_one`` for asyncio callers; uses the wrapped tier's own ``apredict_one`` when it has one."""
        inner = self.inner
        make = (lambda: inner.apredict_one(x, length)) if inner.is_async else None
        return await self._aguard(lambda: self.inner.predict_one(x, length), make)

    async def _aguard(self, call: Callable[[], T], make_coro: Callable[[], Awaitable[T]] | None) -> T:
        attempt = 0
        while True:
            self._admit()
            try:
                result = await self._atimed(call, make_coro)
            except TierFailure as failure:
                delay = self._after_failure(failure, attempt)
                await self._asleep(delay)
                attempt += 1
                continue
            except BaseException:  # cancelled (asyncio.CancelledError), or not the tier's failure
                self._release()
                raise
            self._after_success()
            return result

    async def _atimed(self, call: Callable[[], T], make_coro: Callable[[], Awaitable[T]] | None) -> T:
        if make_coro is not None:  # a native coroutine can really be cancelled at the deadline
            try:
                return await asyncio.wait_for(make_coro(), self.timeout_s)
            except asyncio.TimeoutError:
                raise TierTimeout(self.name, self._timeout_message()) from None
        if self.timeout_s is None:  # no deadline: still keep the blocking call off the event loop
            return await asyncio.get_running_loop().run_in_executor(None, call)
        future = self.pool.submit(call)
        if future is None:
            raise self._saturated()
        try:
            # shield: on timeout, wait_for cancels only the asyncio wrapper; the pool thread runs on, abandoned
            return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), self.timeout_s)
        except asyncio.TimeoutError:
            raise TierTimeout(self.name, self._timeout_message(self.pool.give_up(future))) from None

    # -- shared steps ---------------------------------------------------------------------------------------
    def _count(self, **counts: int) -> None:
        with self._stats_lock:
            self.stats.update(counts)

    def _admit(self) -> None:
        if self.breaker is not None and not self.breaker.allow():
            self._count(failures=1, circuit_open=1)
            raise CircuitOpen(
                self.name,
                f"circuit breaker open after {self.breaker.failures} failures within {self.breaker.window_s:g}s; "
                f"not called for another {self.breaker.retry_in():.2f}s (the router falls back meanwhile)",
            )
        self._count(attempts=1)

    def _release(self) -> None:
        if self.breaker is not None:
            self.breaker.release()

    def _after_success(self) -> None:
        self._count(successes=1)
        if self.breaker is not None:
            self.breaker.record(True)

    def _after_failure(self, failure: TierFailure, attempt: int) -> float:
        """Count the failure; return the delay before a retry, or raise the failure (annotated) to give up."""
        kind = "timeouts" if isinstance(failure, TierTimeout) else (
            "saturated" if isinstance(failure, TierSaturated) else "errors")
        self._count(failures=1, **{kind: 1})
        if self.breaker is not None:
            self.breaker.record(False)
        retryable = not isinstance(failure, TierSaturated) and (
            self._is_transient(failure) or (self.retry_timeouts and isinstance(failure, TierTimeout)))
        if retryable and attempt < self.retries:
            with self._rng_lock:
                delay = self.backoff.delay(attempt, self._rng)
            self._count(retries=1)
            return delay
        if attempt == 0:
            raise failure
        if retryable:
            self._count(retries_exhausted=1)
        raise _annotated(failure, f"after {attempt + 1} attempts")

    def _timeout_message(self, never_started: bool | None = None) -> str:
        if never_started:
            what = f"the call was still queued behind {self.pool.workers} busy worker(s) and was cancelled"
        elif never_started is None:
            what = "the call was cancelled"
        else:
            what = f"the call was abandoned ({self.pool.hung} call(s) of this tier still running)"
        return f"no answer within {self.timeout_s:g}s; {what}; raise timeout_s if the tier is just slow"

    def _saturated(self) -> TierSaturated:
        return TierSaturated(
            self.name, f"{self.pool.max_queue} calls already wait for its {self.pool.workers} worker(s), which are "
                       "busy or stuck; fix the hung tier, or raise workers / max_queue")

    def close(self) -> None:
        """Let the idle pool threads exit (calls still running finish on their own)."""
        self.pool.close()

    def snapshot(self) -> dict[str, Any]:
        """Counters, pool state and breaker state, for metrics."""
        with self._stats_lock:
            counts = dict(self.stats)
        return {**counts, "pool": self.pool.snapshot(),
                "breaker": None if self.breaker is None else self.breaker.snapshot()}

    def __repr__(self) -> str:
        return f"Guarded({self.inner!r}, timeout_s={self.timeout_s}, retries={self.retries})"


def _annotated(failure: TierFailure, note: str) -> TierFailure:
    """The same kind of failure, its message extended with ``note``; the original is chained as the cause."""
    message = str(failure).split(": ", 1)[-1]
    try:
        out = type(failure)(failure.tier, f"{message} ({note})")
    except TypeError:  # a subclass with another signature: keep the base type
        out = TierFailure(failure.tier, f"{message} ({note})")
    out.__cause__ = failure
    return out


def guard_all(tiers: Sequence[Tier], **settings: Any) -> list[Tier]:
    """Wrap every tier with the same settings. ``breaker``, if given, is a zero-argument factory such as
    ``lambda: CircuitBreaker(5, 30, 10)``: every tier needs its own breaker, or one tier's failures would cut off
    the others."""
    factory = settings.pop("breaker", None)
    if factory is not None and not callable(factory):
        raise ConfigError("breaker", "pass a factory (e.g. lambda: CircuitBreaker(...)): each tier needs its own")
    return [Guarded(tier, breaker=None if factory is None else factory(), **settings) for tier in tiers]
