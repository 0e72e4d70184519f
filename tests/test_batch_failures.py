"""Batch failures are per item, every failure is visible (counted and logged), and waiters count shared failures."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest

from tierswitch import AllTiersFailed, CallableTier, Fixed, Router
from tierswitch.errors import InputTooLarge, InvalidInput


def wait_until(condition: Any, timeout_s: float = 10.0) -> bool:
    """Poll a real condition with a deadline (threads give no event for "blocked on the flight")."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


def picky_batched(xs: list[str]) -> list[str]:
    """A batched model that raises for the whole batch when one input is bad (as real batched models do)."""
    if "bad" in xs:
        raise ValueError("bad input in batch")
    return [x.upper() for x in xs]


def test_one_bad_input_falls_back_alone_and_the_rest_stay_on_their_tier():
    full_calls: list[Any] = []

    def full(x: str) -> str:
        full_calls.append(x)
        return "FULL"

    router = Router([CallableTier("base", picky_batched, batched=True, cost=1.0),
                     CallableTier("full", full, cost=20.0)],
                    Fixed("base"))
    results = router.batch(["a", "b", "bad", "c"])
    assert [r.tier for r in results] == ["base", "base", "full", "base"]
    assert [r.output for r in results] == ["A", "B", "FULL", "C"]
    assert full_calls == ["bad"]  # before: every input of the group escalated to full (16.8x the cost)
    assert sum(r.cost for r in results) == 3 * 1.0 + 20.0


def test_without_fallback_the_good_inputs_still_get_answers():
    router = Router([CallableTier("base", picky_batched, batched=True)], Fixed("base"), fallback=False)
    results = router.batch(["a", "bad", "b"], return_exceptions=True)
    assert results[0].output == "A" and results[2].output == "B"
    assert isinstance(results[1], AllTiersFailed) and "bad input in batch" in str(results[1])
    with pytest.raises(AllTiersFailed):
        router.batch(["c", "bad"])
    assert router("c").cached  # the good answer of the raising call was still cached


@pytest.mark.parametrize("bad", [None, "text", b"bytes", 42, {"a": 1}])
def test_what_cannot_be_a_batch_is_refused_by_name(bad: Any):
    router = Router([CallableTier("full", str)], Fixed("full"))
    with pytest.raises(InvalidInput, match="batch"):
        router.batch(bad)


def test_a_generator_batch_is_consumed_and_bounded():
    router = Router([CallableTier("full", str.upper)], Fixed("full"), max_batch=3)
    assert [r.output for r in router.batch(x for x in ["a", "b"])] == ["A", "B"]
    with pytest.raises(InputTooLarge):
        router.batch(iter(["a"] * 10))


def test_admission_errors_per_item_with_return_exceptions():
    router = Router([CallableTier("full", str.upper)], Fixed("full"))
    results = router.batch(["a", None, "b"], return_exceptions=True)
    assert results[0].output == "A" and results[2].output == "B"
    assert isinstance(results[1], InvalidInput) and "batch input 1" in str(results[1])


def test_failures_are_logged_and_counted_per_tier(caplog: pytest.LogCaptureFixture):
    def broken(x: str) -> str:
        raise RuntimeError("model file missing")

    router = Router([CallableTier("base", broken), CallableTier("full", str.upper)], Fixed("base"), cache=None)
    with caplog.at_level(logging.WARNING, logger="tierswitch.router"):
        for i in range(5):
            assert router(f"q{i}").tier == "full"
    warnings = [r for r in caplog.records if r.name == "tierswitch.router"]
    assert len(warnings) == 1  # rate-limited: one line per tier per window, not one per request
    assert "base" in warnings[0].getMessage() and "model file missing" in warnings[0].getMessage()
    assert "falling back to full" in warnings[0].getMessage()
    snap = router.stats.snapshot()
    assert snap["failures_by_tier"] == {"base": 5} and snap["fallbacks"] == 5


def test_waiters_sharing_a_failed_flight_are_counted_as_failed_requests():
    entered = threading.Event()
    release = threading.Event()

    def failing(x: str) -> str:
        entered.set()
        release.wait(5)
        raise RuntimeError("down")

    router = Router([CallableTier("full", failing)], Fixed("full"), fallback=False)
    errors: list[BaseException] = []

    def call() -> None:
        try:
            router("same")
        except AllTiersFailed as exc:
            errors.append(exc)

    leader = threading.Thread(target=call)
    leader.start()
    entered.wait(5)
    waiters = [threading.Thread(target=call) for _ in range(3)]
    for t in waiters:
        t.start()
    flights = router.single_flight
    assert flights is not None
    assert wait_until(lambda: flights.shared == 3)  # all three joined the leader's flight
    release.set()
    for t in [leader, *waiters]:
        t.join(5)
    assert len(errors) == 4
    assert router.stats.snapshot()["failed_requests"] == 4  # before: 1 (the waiters' failures went uncounted)
