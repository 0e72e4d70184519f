"""Guarded tiers: breaker state machine, backoff, retries, timeouts (sync and async), saturation, router fallback."""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from tests.contracts.tier_contract import TierContract

from tierswitch import CallableTier, Capabilities, CostModel, Fixed, Router
from tierswitch.errors import ConfigError, TierFailure, TierTimeout
from tierswitch.reliability import (
    Backoff,
    CircuitBreaker,
    Guarded,
    TierSaturated,
    TransientTierError,
    guard_all,
)
from tierswitch.tiers.base import RawOutput, Tier


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def wait_until(condition, timeout_s: float = 10.0) -> bool:
    """Poll a real condition with a deadline (not a sleep used as synchronisation)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.002)
    return condition()


class Scripted:
    """An inference function that raises the scripted exceptions in order, then answers."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self, x):
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return f"ok:{x}"


# -- breaker ------------------------------------------------------------------------------------------------
def test_breaker_opens_after_n_failures_in_window_probes_then_closes():
    clock = FakeClock()
    b = CircuitBreaker(failures=3, window_s=10, cooldown_s=5, half_open_probes=1, clock=clock)
    assert b.state == "closed"
    for _ in range(2):
        assert b.allow()
        b.record(False)
    clock.now += 11  # the first two failures leave the window
    assert b.allow()
    b.record(False)
    assert b.state == "closed"
    for _ in range(2):
        b.record(False)
    assert b.state == "open" and b.opened == 1
    assert not b.allow() and b.refused == 1
    assert b.retry_in() == pytest.approx(5.0)
    clock.now += 5
    assert b.state == "half_open"
    assert b.allow()  # the one probe
    assert not b.allow()  # a second caller waits for the probe's outcome
    b.record(False)  # the probe failed: open for another cool-down
    assert b.state == "open" and b.opened == 2
    clock.now += 5
    assert b.allow()
    b.record(True)
    assert b.state == "closed"
    assert b.snapshot()["state_code"] == 0 and b.probes == 2


@pytest.mark.parametrize("kwargs", [{"failures": 0}, {"failures": 1.5}, {"window_s": 0}, {"cooldown_s": -1},
                                    {"half_open_probes": 0}, {"failures": True}])
def test_breaker_rejects_bad_settings(kwargs):
    with pytest.raises(ConfigError):
        CircuitBreaker(**kwargs)


# -- backoff ------------------------------------------------------------------------------------------------
def test_backoff_grows_exponentially_with_full_jitter_under_the_cap():
    rng = random.Random(7)
    b = Backoff(base_s=0.1, factor=2.0, max_s=1.0)
    caps = [Backoff(0.1, 2.0, 1.0, jitter=False).delay(a, rng) for a in range(6)]
    assert caps == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
    draws = [b.delay(a, rng) for a in range(6) for _ in range(200)]
    assert all(0.0 <= d <= 1.0 for d in draws)
    assert max(draws[:200]) <= 0.1 and max(draws[-200:]) > 0.5  # jitter spans the cap, caps grow
    assert Backoff().delay(10_000, rng) <= Backoff().max_s  # no overflow for huge attempt numbers
    with pytest.raises(ConfigError, match="factor"):
        Backoff(factor=0.5)
    with pytest.raises(ConfigError, match="max_s"):
        Backoff(base_s=1.0, max_s=0.5)
    with pytest.raises(ConfigError, match="max_s"):
        Backoff(max_s=float("inf"))  # a retry would sleep forever


# -- identity -----------------------------------------------------------------------------------------------
def test_guarded_is_the_wrapped_tier_for_the_router():
    inner = CallableTier("base", str.upper, cost=CostModel(1.0, 0.5), capabilities=Capabilities.of("text", 100),
                         version="7")
    g = Guarded(inner)
    assert isinstance(g, Tier)
    assert (g.name, g.version, g.cost_model, g.capabilities) == ("base", "7", inner.cost_model, inner.capabilities)
    g.set_version("8")
    assert inner.version == "8" and g.version == "8"
    g.cost_model = CostModel(2.0)
    assert inner.cost_model.per_call == 2.0
    assert g.accepts("text", 100) and not g.accepts("image", 1)
    assert g.predict_one("ab", 1).output == "AB" and g.predict(["x", "y"])[1].output == "Y"
    with pytest.raises(ConfigError):
        Guarded(inner, timeout_s=0)
    with pytest.raises(ConfigError):
        Guarded(inner, timeout_s=float("inf"))  # would overflow the wait and escape the fallback (None: no timeout)
    with pytest.raises(ConfigError):
        Guarded(inner, retries=-1)
    with pytest.raises(ConfigError, match="factory"):
        guard_all([inner], breaker=CircuitBreaker())


class TestGuardedKeepsTheTierContract(TierContract):
    """A guarded tier (timeout, retries, breaker: every mechanism on) is still a Tier like any other."""

    def guard(self, fn, cost=0.0) -> Guarded:
        return Guarded(CallableTier("guarded", fn, cost=cost), timeout_s=5.0, retries=1,
                       breaker=CircuitBreaker(failures=100), sleep=lambda s: None)

    def make_tier(self, cost):
        return self.guard(lambda x: (x.upper(), np.array([0.3, 0.7])), cost)

    def inputs(self):
        return ["a", "bb", "ccc"]

    def make_failing_tier(self):
        return self.guard(lambda x: 1 / 0)

    def make_nan_tier(self):
        return self.guard(lambda x: float("nan"))


# -- retries ------------------------------------------------------------------------------------------------
def test_transient_errors_are_retried_with_backoff_and_injected_sleep():
    fn = Scripted(TransientTierError("rate limited"), TransientTierError("rate limited"))
    slept: list[float] = []
    g = Guarded(CallableTier("base", fn), retries=3, backoff=Backoff(0.1, 2.0, 1.0), sleep=slept.append,
                rng=random.Random(0))
    assert g.predict_one("q").output == "ok:q"
    assert fn.calls == 3 and len(slept) == 2
    assert 0 <= slept[0] <= 0.1 and 0 <= slept[1] <= 0.2
    assert g.stats["retries"] == 2 and g.stats["successes"] == 1 and g.stats["errors"] == 2


def test_non_transient_errors_are_not_retried_and_exhausted_retries_say_so():
    fn = Scripted(ValueError("bad weights"))
    g = Guarded(CallableTier("base", fn), retries=3, sleep=lambda s: None)
    with pytest.raises(TierFailure, match="bad weights") as info:
        g.predict_one("q")
    assert fn.calls == 1 and "attempts" not in str(info.value)

    fn = Scripted(*[ConnectionError("reset")] * 5)
    g = Guarded(CallableTier("base", fn), retries=2, retry_on=(ConnectionError,), sleep=lambda s: None)
    with pytest.raises(TierFailure, match=r"reset \(after 3 attempts\)") as info:
        g.predict_one("q")
    assert fn.calls == 3 and g.stats["retries_exhausted"] == 1
    assert isinstance(info.value.__cause__, TierFailure)  # the last attempt's own failure is chained


# -- timeouts -----------------------------------------------------------------------------------------------
def hanging_tier(name: str, release: threading.Event, started: list | None = None) -> CallableTier:
    def fn(x):
        if started is not None:
            started.append(x)
        release.wait()
        return "late"
    return CallableTier(name, fn)


def test_sync_timeout_abandons_the_call_and_counts_it():
    release = threading.Event()
    # the deadline leaves a loaded machine ample time to start the call on its worker (else it is "cancelled")
    g = Guarded(hanging_tier("slow", release), timeout_s=0.5)
    try:
        t0 = time.perf_counter()
        with pytest.raises(TierTimeout, match="no answer within 0.5s; the call was abandoned"):
            g.predict_one("q")
        assert time.perf_counter() - t0 < 5.0  # returned at the deadline, not when the call ended
        assert g.pool.hung == 1 and g.stats["timeouts"] == 1
    finally:
        release.set()
    assert wait_until(lambda: g.pool.hung == 0)
    assert g.pool.returned_late == 1 and g.pool.busy == 0


def test_hung_workers_bound_threads_queued_calls_expire_and_a_full_queue_fails_fast():
    release = threading.Event()
    started: list[str] = []
    # the deadline leaves a loaded machine ample time to start "a" and "b" on their workers
    g = Guarded(hanging_tier("slow", release, started), timeout_s=0.25, workers=2, max_queue=1)
    answers: list[str] = []
    blocker = threading.Thread(target=lambda: answers.append(g.predict_one("d").output))
    try:
        for q in ("a", "b"):  # both workers get stuck
            with pytest.raises(TierTimeout, match="abandoned"):
                g.predict_one(q)
        with pytest.raises(TierTimeout, match="still queued behind 2 busy worker"):
            g.predict_one("c")  # waited in the queue, never ran
        assert g.pool.snapshot()["threads"] == 2 and g.pool.cancelled == 1 and started == ["a", "b"]
        assert g.pool.snapshot()["queued"] == 0  # the cancelled call left the queue at once
        g.timeout_s = 60.0  # "d" holds the one queue place until the workers come back, however slow this thread
        blocker.start()
        assert wait_until(lambda: g.pool.snapshot()["queued"] == 1)
        with pytest.raises(TierSaturated, match="1 calls already wait for its 2 worker"):
            g.predict_one("e")  # refused at once, not after its timeout
        assert g.pool.refused == 1 and g.stats["saturated"] == 1
    finally:
        release.set()
        if blocker.ident is not None:  # started
            blocker.join(30)
    assert answers == ["late"]  # "d" ran once a stuck worker returned
    assert wait_until(lambda: g.pool.busy == 0 and g.pool.hung == 0)
    g.inner.fn = lambda x: "fine"
    assert g.predict_one("q").output == "fine"  # the workers came back
    assert started == ["a", "b", "d"]  # the cancelled call "c" never ran


def test_a_hung_call_does_not_keep_the_process_alive():
    script = (
        "import threading\n"
        "from tierswitch import CallableTier\n"
        "from tierswitch.errors import TierTimeout\n"
        "from tierswitch.reliability import Guarded\n"
        "g = Guarded(CallableTier('t', lambda x: threading.Event().wait()), timeout_s=0.05)\n"
        "try:\n    g.predict_one('q')\nexcept TierTimeout:\n    print('timed out')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "timed out"


# -- router integration -------------------------------------------------------------------------------------
def test_router_falls_back_from_a_timed_out_tier_and_records_it():
    release = threading.Event()
    base = Guarded(hanging_tier("base", release), timeout_s=0.05)
    full = CallableTier("full", lambda x: "full answer")
    router = Router([base, full], Fixed("base"), cache=None)
    try:
        routed = router("hello")
    finally:
        release.set()
    assert routed.output == "full answer" and routed.tier == "full"
    kinds = [(s.kind, s.tier) for s in routed.trace]
    assert ("failure", "base") in kinds and ("fallback", "full") in kinds
    failure = next(s for s in routed.trace if s.kind == "failure")
    assert "no answer within 0.05s" in failure.detail
    assert router.stats.snapshot()["fallbacks"] == 1


def test_open_breaker_stops_calling_the_tier_and_a_probe_closes_it():
    clock = FakeClock()
    fn = Scripted(*[RuntimeError("down")] * 3)
    base = Guarded(CallableTier("base", fn), breaker=CircuitBreaker(3, 60, 10, clock=clock), clock=clock)
    router = Router([base, CallableTier("full", lambda x: "F")], Fixed("base"), cache=None)
    for i in range(10):
        assert router(f"q{i}").output == "F"
    assert fn.calls == 3  # after three failures the breaker refused the other seven
    details = [s.detail for s in router(f"q{10}").trace if s.kind == "failure"]
    assert "circuit breaker open" in details[0]
    assert base.stats["circuit_open"] == 8 and base.breaker.state == "open"
    clock.now += 10
    routed = router("after cool-down")
    assert routed.tier == "base" and routed.output == "ok:after cool-down"
    assert base.breaker.state == "closed" and fn.calls == 4


# -- async --------------------------------------------------------------------------------------------------
class AsyncHang(Tier):
    """A tier with a native coroutine path that hangs until released."""

    is_async = True

    def __init__(self, release: asyncio.Event) -> None:
        super().__init__("async")
        self.release = release
        self.entered = asyncio.Event()
        self.cancelled = False

    def _predict_raw(self, batch):
        return [RawOutput("sync") for _ in batch]

    async def apredict_one(self, x, length=0):
        self.entered.set()
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        return self.predict_one(x, length)


def test_async_timeouts_cancel_native_coroutines_and_abandon_sync_calls():
    async def main() -> None:
        tier = AsyncHang(asyncio.Event())
        g = Guarded(tier, timeout_s=0.05)
        with pytest.raises(TierTimeout):
            await g.apredict_one("q")
        assert tier.cancelled  # wait_for really cancelled it: nothing left running

        release = threading.Event()
        g2 = Guarded(hanging_tier("slow", release), timeout_s=0.5)  # time enough to start the call: abandoned
        try:
            with pytest.raises(TierTimeout):
                await g2.apredict_one("q")
            assert g2.pool.hung == 1
        finally:
            release.set()

        fn = Scripted(TransientTierError("busy"))
        slept: list[float] = []

        async def asleep(s: float) -> None:
            slept.append(s)

        g3 = Guarded(CallableTier("flaky", fn), timeout_s=1.0, retries=1, asleep=asleep)
        assert (await g3.apredict_one("q")).output == "ok:q" and len(slept) == 1
        assert [p.output for p in await g3.apredict(["a", "b"])] == ["ok:a", "ok:b"]

    asyncio.run(main())


def test_router_acall_gets_the_same_timeout_and_fallback():
    release = threading.Event()
    router = Router([Guarded(hanging_tier("base", release), timeout_s=0.05), CallableTier("full", lambda x: "F")],
                    Fixed("base"), cache=None)

    async def main():
        return await asyncio.gather(*(router.acall(f"q{i}") for i in range(8)))

    try:
        results = asyncio.run(main())
    finally:
        release.set()
    assert [r.output for r in results] == ["F"] * 8
    assert all(any(s.kind == "failure" and "no answer within" in s.detail for s in r.trace) for r in results)


def test_a_cancelled_probe_does_not_wedge_the_breaker():
    clock = FakeClock()
    breaker = CircuitBreaker(failures=1, window_s=60, cooldown_s=10, clock=clock)
    breaker.record(False)
    clock.now += 10
    assert breaker.state == "half_open"

    async def main() -> None:
        tier = AsyncHang(asyncio.Event())
        g = Guarded(tier, breaker=breaker, clock=clock)
        task = asyncio.create_task(g.apredict_one("q"))  # takes the one probe slot
        await tier.entered.wait()
        assert not breaker.allow()  # the slot is taken while the probe runs
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert breaker.state == "half_open" and breaker.allow()  # cancelled: no verdict, and the slot came back
