"""The ``Tier`` seam: one model the router may call, with its cost, capabilities and version.

Adapters implement one method, ``_predict_raw(batch) -> list[RawOutput]`` (or, for a native coroutine such as an
HTTP call, ``is_async = True`` and ``_apredict_raw``); the public ``predict``/``apredict`` are templates that time
the call, price each item, check every output is finite and wrap any exception in ``TierFailure`` naming the tier.
An async tier called from the sync core runs on a private event loop (``tiers.loop``), so a coroutine is never
returned as an answer. Tiers are ordered cheapest first in a router.

Streaming tiers (``streams = True``) also implement ``astream(x, length)``: an async iterator of text deltas
(``str``) that ends with one complete ``Prediction``.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from tierswitch.errors import ConfigError, TierFailure
from tierswitch.outputs import check_output, finite_extremes, nonfinite_output, same_output
from tierswitch.types import MODALITIES, Prediction, Usage
from tierswitch.validation import describe, positive

__all__ = ["Capabilities", "CostModel", "RawOutput", "Tier", "finite_extremes", "make_prediction",
           "nonfinite_output", "same_output"]


@dataclass(frozen=True, slots=True)
class CostModel:
    """Price of one call: ``per_call + per_unit * length`` (length in the input's unit: tokens, pixels, elements).

    Costs are in whatever unit the user chooses (dollars, milliseconds, relative units); all tiers of a router
    must share it.
    """

    per_call: float = 0.0
    per_unit: float = 0.0

    def __post_init__(self) -> None:
        for name in ("per_call", "per_unit"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ConfigError(f"cost.{name}", f"must be a finite number >= 0, got {describe(value)}")

    def cost(self, length: int) -> float:
        """Price of one call on an input of ``length`` units."""
        return self.per_call + self.per_unit * length


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a tier accepts: ``modalities`` (None: any) and ``max_length`` in the input's units (None: no cap)."""

    modalities: frozenset[str] | None = None
    max_length: int | None = None

    def __post_init__(self) -> None:
        if self.modalities is not None:
            unknown = set(self.modalities) - set(MODALITIES)
            if unknown:
                raise ConfigError(
                    "capabilities.modalities",
                    f"unknown modalities {sorted(unknown)}; allowed: {list(MODALITIES)}",
                )
        if self.max_length is not None:
            positive("capabilities.max_length", self.max_length, integer=True)

    @classmethod
    def of(cls, modalities: Iterable[str] | str | None = None, max_length: int | None = None) -> Capabilities:
        """Build from any iterable of modality names (or one name)."""
        if isinstance(modalities, str):
            modalities = (modalities,)
        return cls(None if modalities is None else frozenset(modalities), max_length)

    def accepts(self, modality: str, length: int) -> bool:
        """True when an input of this modality and length may go to the tier."""
        if self.modalities is not None and modality not in self.modalities:
            return False
        return self.max_length is None or length <= self.max_length

    def describe(self) -> str:
        mods = "any modality" if self.modalities is None else "/".join(sorted(self.modalities))
        cap = "" if self.max_length is None else f", length <= {self.max_length}"
        return mods + cap


class RawOutput(NamedTuple):
    """What an adapter hands back for one item, before timing and pricing.

    ``cost`` overrides the tier's ``CostModel`` for this item when the adapter knows the real price (a language
    model's ``usage`` x its token prices); ``usage`` carries those token counts.
    """

    output: Any
    probs: np.ndarray | None = None
    confidence: float | None = None
    cost: float | None = None
    usage: Usage | None = None


def make_prediction(
    raw: RawOutput, tier: str, version: str, cost: float, latency_s: float
) -> Prediction:
    """Validate one raw output and turn it into a ``Prediction``.

    The rule is ``tierswitch.outputs.check_output``: probabilities are copied into a read-only float64 array (the
    model may reuse its buffer; a cached answer must not change under it) and must be in [0, 1] summing to 1;
    confidence defaults to the top class probability and must be a number in [0, 1]; NaN/inf anywhere in the output
    (nested lists, dicts, numpy scalars too) raises ``NonFiniteOutput``, anything else malformed ``TierFailure``.
    """
    probs, confidence = check_output(tier, raw.output, raw.probs, raw.confidence)
    if raw.cost is not None:
        if isinstance(raw.cost, bool) or not isinstance(raw.cost, (int, float)) or not math.isfinite(raw.cost) \
                or raw.cost < 0:
            raise TierFailure(tier, f"reported cost {describe(raw.cost)} is not a finite number >= 0")
        cost = float(raw.cost)
    return Prediction(raw.output, tier, version, cost, latency_s, probs, confidence, raw.usage)


class Tier:
    """One model the router may call.

    ``name`` identifies the tier in policies, caches and logs; ``cost`` prices each call; ``capabilities`` says
    which inputs it accepts; ``version`` is part of every cache key, so bumping it (a new student) makes the old
    answers unreachable. Subclasses implement ``_predict_raw`` (sync) or set ``is_async`` and implement
    ``_apredict_raw`` (a coroutine).
    """

    #: True when the adapter's native call is a coroutine (``_apredict_raw``): the async core awaits it; the sync
    #: core runs it on the tier's private event loop. False: the async core runs ``predict`` in a bounded executor.
    is_async: bool = False
    #: True when the tier implements ``astream`` (text deltas, then the complete ``Prediction``).
    streams: bool = False
    #: A sync tier fast enough to call on the event loop itself (an in-memory model answering in microseconds):
    #: the async core then calls it inline instead of hopping to its executor, which costs more than the call.
    inline: bool = False

    def __init__(
        self,
        name: str,
        *,
        cost: CostModel | float = 0.0,
        capabilities: Capabilities | None = None,
        version: str = "1",
    ) -> None:
        if not isinstance(name, str) or not name or ":" in name:
            raise ConfigError("tier.name", f"must be a non-empty string without ':', got {describe(name)}")
        self.name = name
        if not isinstance(cost, CostModel):
            try:
                per_call = float(cost)
            except (TypeError, ValueError):
                raise ConfigError("cost.per_call", f"must be a finite number >= 0, got {describe(cost)}") from None
            cost = CostModel(per_call=per_call)
        self.cost_model = cost
        self.capabilities = capabilities if capabilities is not None else Capabilities()
        self._version = str(version)
        self._version_lock = threading.Lock()

    @property
    def version(self) -> str:
        """The version of the model now serving (part of every cache key)."""
        return self._version

    def set_version(self, version: str) -> None:
        """Mark that a new model now serves (e.g. a promoted student): old cache entries stop matching."""
        with self._version_lock:
            self._version = str(version)

    def accepts(self, modality: str, length: int) -> bool:
        return self.capabilities.accepts(modality, length)

    def cacheable(self, x: Any) -> bool:
        """Whether this tier's answer for ``x`` may be cached and served again (False, e.g., for a sampled
        generation without a seed). The router neither looks up nor stores such answers."""
        return True

    def _predict_raw(self, batch: Sequence[Any]) -> Sequence[RawOutput]:
        """Run the model on ``batch``; return one ``RawOutput`` per item, in order. Async adapters leave this to
        the base, which runs ``_apredict_raw`` on the tier's private event loop."""
        if not self.is_async:
            raise NotImplementedError(f"{type(self).__name__} implements neither _predict_raw nor _apredict_raw")
        from tierswitch.tiers.loop import private_loop

        return private_loop().run(self._apredict_raw(batch))

    async def _apredict_raw(self, batch: Sequence[Any]) -> Sequence[RawOutput]:
        """The coroutine form of ``_predict_raw``; implemented by adapters that set ``is_async = True``."""
        raise NotImplementedError(f"{type(self).__name__} has no native async call (is_async is False)")

    def _serving_version(self) -> str:
        """The version stamped on predictions; adapters that swap weights override it to snapshot atomically."""
        return self._version

    def predict(self, batch: Sequence[Any], lengths: Sequence[int] | None = None) -> list[Prediction]:
        """Predict every item of ``batch``; ``lengths`` (input units per item) price per-unit costs.

        Raises ``TierFailure`` (cause chained) when the model raises, returns the wrong number of items, or returns
        non-finite numbers.
        """
        version = self._serving_version()
        started = time.perf_counter()
        try:
            raws = self._predict_raw(batch)
        except TierFailure:
            raise
        except Exception as exc:  # any other error (a nested router's AllTiersFailed too) fails this tier, by name
            raise TierFailure(self.name, f"{type(exc).__name__}: {exc}") from exc
        return self._finish(batch, lengths, raws, version, time.perf_counter() - started)

    async def apredict(self, batch: Sequence[Any], lengths: Sequence[int] | None = None) -> list[Prediction]:
        """``predict`` for the async core: awaits ``_apredict_raw`` (``is_async`` tiers only; the router runs other
        tiers' ``predict`` in its executor). Cancellation propagates to the call in flight."""
        version = self._serving_version()
        started = time.perf_counter()
        try:
            raws = await self._apredict_raw(batch)
        except TierFailure:
            raise
        except Exception as exc:
            raise TierFailure(self.name, f"{type(exc).__name__}: {exc}") from exc
        return self._finish(batch, lengths, raws, version, time.perf_counter() - started)

    async def apredict_one(self, x: Any, length: int = 0) -> Prediction:
        """Predict one item on the async path."""
        return (await self.apredict([x], [length]))[0]

    def _finish(
        self, batch: Sequence[Any], lengths: Sequence[int] | None, raws: Sequence[RawOutput], version: str,
        elapsed: float,
    ) -> list[Prediction]:
        """The shared second half of ``predict`` and ``apredict``: count, time, price and validate each item."""
        if len(raws) != len(batch):
            raise TierFailure(self.name, f"returned {len(raws)} outputs for a batch of {len(batch)}")
        per_item = elapsed / max(1, len(batch))
        model = self.cost_model
        out = []
        for i, raw in enumerate(raws):
            length = lengths[i] if lengths is not None else 0
            out.append(make_prediction(raw, self.name, version, model.cost(length), per_item))
        return out

    def predict_one(self, x: Any, length: int = 0) -> Prediction:
        """Predict one item; adapters with a cheaper single-item path override this."""
        return self.predict([x], [length])[0]

    def astream(self, x: Any, length: int = 0) -> AsyncIterator[str | Prediction]:
        """Text deltas, then one complete ``Prediction`` (streaming tiers, ``streams = True``, override this)."""
        raise TierFailure(self.name, "this tier does not stream (streams is False); call apredict_one instead")

    def describe(self) -> dict[str, Any]:
        """A plain summary for logs and reports."""
        return {
            "name": self.name,
            "kind": type(self).__name__,
            "version": self.version,
            "cost_per_call": self.cost_model.per_call,
            "cost_per_unit": self.cost_model.per_unit,
            "accepts": self.capabilities.describe(),
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, version={self.version!r})"
