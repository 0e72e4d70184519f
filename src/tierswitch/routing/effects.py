"""The I/O a routing step asks for, and the two shells that perform it.

The steps of a request (``routing.request``, ``routing.miss``, ``routing.batch``) are generators: they ``yield`` an
effect (call a tier, look up or store in the cache, ...) and receive its result, so one implementation of each step
serves both cores. ``SyncShell`` performs an effect with blocking calls; ``AsyncShell`` awaits it: async tiers are
awaited, sync tiers run in the router's bounded executor, the cache uses its async methods. Only this module
knows the difference.

A tier call's ``TierFailure`` comes back to the step as a value (the step decides the fallback); any other
exception propagates out of the shell.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Generator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from tierswitch.errors import TierFailure
from tierswitch.routing.state import RoutingState
from tierswitch.types import Prediction

if TYPE_CHECKING:
    from tierswitch.cache.base import CacheKey

__all__ = ["AsyncShell", "Call", "CallGroup", "Effect", "GetMany", "Lookup", "Parallel", "Steps", "Store",
           "StoreMany", "SyncShell"]

T = TypeVar("T")
Steps = Generator["Effect", Any, T]


class Effect:
    """One piece of I/O a step asks for: ``run`` performs it blocking, ``arun`` awaiting."""

    __slots__ = ()

    def run(self, shell: SyncShell) -> Any:
        raise NotImplementedError

    async def arun(self, shell: AsyncShell) -> Any:
        raise NotImplementedError


class SyncShell:
    """Drives steps with blocking calls (the sync core)."""

    __slots__ = ("state",)

    def __init__(self, state: RoutingState) -> None:
        self.state = state

    def run(self, steps: Steps[T]) -> T:
        send = steps.send
        try:
            effect = next(steps)
            while True:
                effect = send(effect.run(self))
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]


class AsyncShell:
    """Drives steps by awaiting (the async core); never blocks the event loop on a tier or the cache."""

    __slots__ = ("state",)

    def __init__(self, state: RoutingState) -> None:
        self.state = state

    async def run(self, steps: Steps[T]) -> T:
        send = steps.send
        try:
            effect = next(steps)
            while True:
                effect = send(await effect.arun(self))
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]


class Call(Effect):
    """Call one tier on one input; the result is a ``Prediction`` or the ``TierFailure``.

    ``stream``: the step would like this call streamed (``routing.streaming`` honours it; the plain shells ignore
    it and make an ordinary call).
    """

    __slots__ = ("tier", "payload", "length", "stream")

    def __init__(self, tier: str, payload: Any, length: int, stream: bool = False) -> None:
        self.tier = tier
        self.payload = payload
        self.length = length
        self.stream = stream

    def run(self, shell: SyncShell) -> Prediction | TierFailure:
        try:
            return shell.state.tiers[self.tier].predict_one(self.payload, self.length)
        except TierFailure as failure:
            return failure

    async def arun(self, shell: AsyncShell) -> Prediction | TierFailure:
        tier = shell.state.tiers[self.tier]
        result: Prediction | TierFailure = await _off_the_loop(
            shell, tier.is_async, tier.inline, tier.predict_one, tier.apredict_one, self.payload, self.length)
        return result


class CallGroup(Effect):
    """Call one tier on a group of inputs; the result is one ``Prediction`` per input, or the ``TierFailure``."""

    __slots__ = ("tier", "payloads", "lengths")

    def __init__(self, tier: str, payloads: Sequence[Any], lengths: Sequence[int]) -> None:
        self.tier = tier
        self.payloads = payloads
        self.lengths = lengths

    def run(self, shell: SyncShell) -> list[Prediction] | TierFailure:
        try:
            return shell.state.tiers[self.tier].predict(self.payloads, self.lengths)
        except TierFailure as failure:
            return failure

    async def arun(self, shell: AsyncShell) -> list[Prediction] | TierFailure:
        tier = shell.state.tiers[self.tier]
        result: list[Prediction] | TierFailure = await _off_the_loop(
            shell, tier.is_async, tier.inline, tier.predict, tier.apredict, self.payloads, self.lengths)
        return result


async def _off_the_loop(shell: AsyncShell, is_async: bool, inline: bool, call: Callable[..., Any],
                        acall: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    """How the async core calls a tier (the one rule for single and group calls): a native coroutine is awaited, an
    ``inline`` sync tier is called on the loop, any other sync tier runs in the router's bounded executor. A
    ``TierFailure`` is returned, for the step to decide the fallback."""
    try:
        if is_async:
            return await acall(*args)
        if inline:
            return call(*args)
        return await asyncio.get_running_loop().run_in_executor(shell.state.executor(), call, *args)
    except TierFailure as failure:
        return failure


class Parallel(Effect):
    """Several effects at once: one after the other in the sync core, concurrently in the async core."""

    __slots__ = ("effects",)

    def __init__(self, effects: Sequence[Effect]) -> None:
        self.effects = effects

    def run(self, shell: SyncShell) -> list[Any]:
        return [effect.run(shell) for effect in self.effects]

    async def arun(self, shell: AsyncShell) -> list[Any]:
        if len(self.effects) == 1:
            return [await self.effects[0].arun(shell)]
        return list(await asyncio.gather(*(effect.arun(shell) for effect in self.effects)))


class Lookup(Effect):
    """The cached answer of the strongest tier among ``keys`` ((tier, version), strongest first), or None."""

    __slots__ = ("digest", "keys")

    def __init__(self, digest: str, keys: Sequence[tuple[str, str]]) -> None:
        self.digest = digest
        self.keys = keys

    def run(self, shell: SyncShell) -> Prediction | None:
        cache = shell.state.cache
        return None if cache is None else cache.lookup(self.digest, self.keys)

    async def arun(self, shell: AsyncShell) -> Prediction | None:
        cache = shell.state.cache
        return None if cache is None else await cache.alookup(self.digest, self.keys)


class GetMany(Effect):
    """Cached answers for many ``(tier, version, digest)`` keys in one round trip."""

    __slots__ = ("keys",)

    def __init__(self, keys: Sequence[CacheKey]) -> None:
        self.keys = keys

    def run(self, shell: SyncShell) -> list[Prediction | None]:
        cache = shell.state.cache
        return [None] * len(self.keys) if cache is None else cache.get_many(self.keys)

    async def arun(self, shell: AsyncShell) -> list[Prediction | None]:
        cache = shell.state.cache
        return [None] * len(self.keys) if cache is None else await cache.aget_many(self.keys)


class Store(Effect):
    """Cache one checked answer (a prediction that passed the tier boundary's checks)."""

    __slots__ = ("digest", "prediction")

    def __init__(self, digest: str, prediction: Prediction) -> None:
        self.digest = digest
        self.prediction = prediction

    def run(self, shell: SyncShell) -> None:
        cache = shell.state.cache
        if cache is not None:
            cache.set(self.digest, self.prediction, checked=True)

    async def arun(self, shell: AsyncShell) -> None:
        cache = shell.state.cache
        if cache is not None:
            await cache.aset(self.digest, self.prediction, checked=True)


class StoreMany(Effect):
    """Cache many checked answers in one round trip."""

    __slots__ = ("items",)

    def __init__(self, items: Sequence[tuple[str, Prediction]]) -> None:
        self.items = items

    def run(self, shell: SyncShell) -> None:
        cache = shell.state.cache
        if cache is not None and self.items:
            cache.set_many(self.items, checked=True)

    async def arun(self, shell: AsyncShell) -> None:
        cache = shell.state.cache
        if cache is not None and self.items:
            await cache.aset_many(self.items, checked=True)
