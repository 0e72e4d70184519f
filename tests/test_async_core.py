"""The native async core: the same steps as the sync core, awaited; async tiers never become answers."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from tierswitch import AllTiersFailed, CallableTier, Cascade, Fixed, Router
from tierswitch.errors import StreamInterrupted, TierFailure
from tierswitch.tiers.base import RawOutput, Tier
from tierswitch.types import Prediction, Usage


async def shout(x: str) -> tuple[str, list[float]]:
    await asyncio.sleep(0)
    return x.upper(), [0.1, 0.9]


def test_an_async_function_is_awaited_on_both_cores_and_never_returned_as_the_answer():
    tier = CallableTier("full", shout, cost=3.0)
    assert tier.is_async
    router = Router([tier], Fixed("full"))
    sync = router("hello")
    assert sync.output == "HELLO" and sync.cost == 3.0 and not asyncio.iscoroutine(sync.output)
    assert router("hello").cached and router("hello").output == "HELLO"

    async def main() -> tuple[Any, Any]:
        return await router.acall("again"), await router.acall("again")

    first, second = asyncio.run(main())
    assert first.output == "AGAIN" and not first.cached and second.cached and second.output == "AGAIN"


def test_a_function_returning_an_awaitable_it_was_not_declared_with_is_a_tier_failure():
    async def inner(x: str) -> str:
        return x

    tier = CallableTier("full", lambda x: inner(x))  # a sync lambda returning a coroutine: not detectable up front
    router = Router([tier], Fixed("full"), fallback=False)
    with pytest.raises(AllTiersFailed, match="awaitable"):
        router("x")
    assert router.cache is not None and router.cache.stats.total("sets") == 0  # nothing half-written cached


def test_sync_tiers_run_in_the_bounded_executor_not_on_the_event_loop():
    loop_threads: list[str] = []

    def base(x: str) -> tuple[str, list[float]]:
        loop_threads.append(threading.current_thread().name)
        return "b", [0.4, 0.6]

    router = Router([CallableTier("base", base), CallableTier("full", shout)], Cascade({"base": 0.9}),
                    executor_workers=2)

    async def main() -> list[Any]:
        return await asyncio.gather(*(router.acall(f"q{i}") for i in range(6)))

    results = asyncio.run(main())
    assert [r.tier for r in results] == ["full"] * 6  # base's 0.6 is under the 0.9 bar: escalated
    assert all(r.output.startswith("Q") for r in results)
    assert loop_threads and all(name.startswith("tierswitch-tier") for name in loop_threads)
    assert len(set(loop_threads)) <= 2
    router.close()


def test_identical_concurrent_acalls_make_one_tier_call():
    calls = 0
    release = asyncio.Event()

    async def slow(x: str) -> str:
        nonlocal calls
        calls += 1
        await release.wait()
        return "answer"

    router = Router([CallableTier("full", slow)], Fixed("full"))

    async def main() -> list[Any]:
        tasks = [asyncio.create_task(router.acall("same")) for _ in range(16)]
        while router.single_flight is not None and router.single_flight.in_flight() == 0:
            await asyncio.sleep(0)
        for _ in range(50):  # let every waiter join the flight before it finishes
            await asyncio.sleep(0)
        release.set()
        return await asyncio.gather(*tasks)

    results = asyncio.run(main())
    assert calls == 1 and all(r.output == "answer" for r in results)
    assert sum(not r.cached for r in results) == 1


def test_abatch_matches_batch_and_fails_per_item():
    def full(x: str) -> str:
        if x == "bad":
            raise ValueError("cannot take this one")
        return x[::-1]

    def make() -> Router:
        return Router([CallableTier("full", full, batched=False), CallableTier("backup", lambda x: "B")],
                      Fixed("full"), fallback=False)

    sync = make().batch(["ab", "bad", "cd"], return_exceptions=True)
    asy = asyncio.run(make().abatch(["ab", "bad", "cd"], return_exceptions=True))
    for results in (sync, asy):
        assert results[0].output == "ba" and results[2].output == "dc"
        assert isinstance(results[1], AllTiersFailed)


class Chunks(Tier):
    """A streaming tier that answers with the words of its input, one delta each."""

    is_async = True
    streams = True

    def __init__(self, name: str, *, fail_after: int | None = None, cost: float = 0.0) -> None:
        super().__init__(name, cost=cost)
        self.fail_after = fail_after
        self.closed = 0

    async def _apredict_raw(self, batch: Sequence[Any]) -> Sequence[RawOutput]:
        return [RawOutput(str(x), confidence=0.5, usage=Usage(1, len(str(x).split()))) for x in batch]

    async def astream(self, x: Any, length: int = 0) -> AsyncIterator[str | Prediction]:
        words = str(x).split()
        try:
            for i, word in enumerate(words):
                if self.fail_after is not None and i == self.fail_after:
                    raise TierFailure(self.name, "upstream closed the stream")
                await asyncio.sleep(0)
                yield word + " "
            yield Prediction(" ".join(words) + " ", self.name, self.version, 1.0, 0.0, usage=Usage(1, len(words)))
        finally:
            self.closed += 1


async def collect(stream: AsyncIterator[Any]) -> list[Any]:
    return [item async for item in stream]


def test_astream_passes_deltas_through_then_one_routed_and_caches_the_whole_answer():
    tier = Chunks("full")
    router = Router([tier], Fixed("full"))
    items = asyncio.run(collect(router.astream("one two three")))
    *deltas, routed = items
    assert deltas == ["one ", "two ", "three "]
    assert routed.output == "one two three " and routed.usage == Usage(1, 3) and not routed.cached
    again = asyncio.run(collect(router.astream("one two three")))
    assert again[0] == "one two three " and again[-1].cached


def test_a_stream_that_breaks_after_its_first_delta_is_interrupted_and_nothing_is_cached():
    tier = Chunks("full", fail_after=1)
    router = Router([tier], Fixed("full"))

    async def main() -> list[Any]:
        got: list[Any] = []
        with pytest.raises(StreamInterrupted):
            async for item in router.astream("one two three"):
                got.append(item)
        return got

    assert asyncio.run(main()) == ["one "]
    assert router.cache is not None and router.cache.stats.total("sets") == 0
    assert router.stats.snapshot()["failed_requests"] == 1


def test_a_stream_failing_before_its_first_delta_falls_back_to_the_next_tier():
    router = Router([Chunks("base", fail_after=0), Chunks("full")], Fixed("base"))
    *deltas, routed = asyncio.run(collect(router.astream("a b")))
    assert routed.tier == "full" and "".join(deltas) == "a b "
    assert [s.kind for s in routed.trace][-3:] == ["fallback", "call", "accept"]


def test_a_cascade_buffers_the_cheap_answer_and_streams_only_the_final_tier():
    router = Router([Chunks("base"), Chunks("full")], Cascade({"base": 0.9}), cache=None)
    *deltas, routed = asyncio.run(collect(router.astream("x y")))
    assert routed.tier == "full" and deltas == ["x ", "y "]  # base (0.5 < 0.9) was called whole, then escalated

    accepting = Router([Chunks("base"), Chunks("full")], Cascade({"base": 0.4}), cache=None)
    *deltas, routed = asyncio.run(collect(accepting.astream("x y")))
    assert routed.tier == "base" and deltas == ["x y"]  # accepted: its whole text as one delta


def test_closing_a_stream_early_closes_the_tier_stream():
    tier = Chunks("full")
    router = Router([tier], Fixed("full"))

    async def main() -> None:
        stream = router.astream("a b c d")
        assert await stream.__anext__() == "a "
        await stream.aclose()

    asyncio.run(main())
    assert tier.closed == 1
    assert router.cache is not None and router.cache.stats.total("sets") == 0
