"""``CallableTier``: any Python function as a tier, single-item or batched."""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Sequence
from typing import Any

from tierswitch.errors import ConfigError, TierFailure
from tierswitch.tiers.base import Capabilities, CostModel, RawOutput, Tier, make_prediction
from tierswitch.types import Prediction

__all__ = ["CallableTier", "as_raw"]


def as_raw(result: Any) -> RawOutput:
    """Accept what inference functions usually return: a ``RawOutput``, an ``(output, probs)`` pair, a dict with
    ``output`` and ``probs``/``confidence`` keys, or a bare output."""
    if isinstance(result, RawOutput):
        return result
    if isinstance(result, tuple) and len(result) == 2:
        return RawOutput(result[0], result[1])
    if isinstance(result, dict) and "output" in result:
        return RawOutput(result["output"], result.get("probs"), result.get("confidence"))
    if inspect.isawaitable(result):  # never an answer: the function is async but was not detected as such
        if inspect.iscoroutine(result):
            result.close()
        raise TypeError("the tier function returned an awaitable; pass the `async def` function itself so "
                        "CallableTier can await it")
    return RawOutput(result)


class CallableTier(Tier):
    """Wrap ``fn``. With ``batched=False`` it is called once per item (``fn(x)``); with ``batched=True`` once per
    batch (``fn(list_of_x)`` returning one result per item). See ``as_raw`` for the result shapes accepted.

    An ``async def`` function is detected: the async core awaits it, the sync core runs it on the private event
    loop (``tiers.loop``). ``inline=True`` marks a sync function that answers in microseconds, which the async
    core then calls on the event loop instead of in its executor.
    """

    def __init__(
        self,
        name: str,
        fn: Callable[[Any], Any],
        *,
        batched: bool = False,
        cost: CostModel | float = 0.0,
        capabilities: Capabilities | None = None,
        version: str = "1",
        inline: bool = False,
    ) -> None:
        super().__init__(name, cost=cost, capabilities=capabilities, version=version)
        self.inline = bool(inline)
        if not callable(fn):
            raise ConfigError("tier.fn", f"tier {name!r} needs a function to call, got a {type(fn).__name__}")
        self.fn = fn
        self.batched = batched
        self.is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
            getattr(fn, "__call__", None)  # noqa: B004 - an object whose __call__ is async
        )

    def _predict_raw(self, batch: Sequence[Any]) -> Sequence[RawOutput]:
        if self.is_async:
            return super()._predict_raw(batch)  # on the private loop
        if self.batched:
            return [as_raw(r) for r in self.fn(list(batch))]
        return [as_raw(self.fn(x)) for x in batch]

    async def _apredict_raw(self, batch: Sequence[Any]) -> Sequence[RawOutput]:
        if self.batched:
            return [as_raw(r) for r in await self.fn(list(batch))]
        return [as_raw(await self.fn(x)) for x in batch]

    def predict_one(self, x: Any, length: int = 0) -> Prediction:
        """One call of ``fn`` without building a batch: the router's single-request hot path."""
        if self.batched or self.is_async:
            return super().predict_one(x, length)
        version = self._version
        started = time.perf_counter()
        try:
            raw = as_raw(self.fn(x))
        except TierFailure:
            raise
        except Exception as exc:
            raise TierFailure(self.name, f"{type(exc).__name__}: {exc}") from exc
        elapsed = time.perf_counter() - started
        return make_prediction(raw, self.name, version, self.cost_model.cost(length), elapsed)
