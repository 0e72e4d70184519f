"""Serving the demo's models as tiers, and pricing them.

Costs come from one of two sources, and the demo always says which:
- ``table`` (default): a stated price table in credits per request (``PRICE_TABLE``), in the spread of a small
  hosted model against a large one, so results do not depend on how busy the machine is;
- ``measured``: each tier's median single-request latency in microseconds, measured at start-up on inputs that are
  not scored.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from tierswitch.demo.models import DemoModel
from tierswitch.errors import ConfigError, TierFailure, TierswitchError
from tierswitch.tiers.base import Capabilities, CostModel, RawOutput, Tier, make_prediction
from tierswitch.types import Prediction

__all__ = ["COST_SOURCES", "PRICE_TABLE", "ModelTier", "measure_latency_us", "price_for"]

PRICE_TABLE: Mapping[str, float] = {"base": 1.0, "distilled": 2.0, "full": 20.0}
"""Credits per request, by role."""

COST_SOURCES = ("table", "measured")


class ModelTier(Tier):
    """A ``DemoModel`` as a tier: the output is the class name, with the class probabilities.

    ``predict_one`` skips batch building (the router's single-request hot path); ``predict`` runs one vectorised
    call for the whole batch.
    """

    def __init__(
        self,
        name: str,
        model: DemoModel,
        classes: Sequence[str],
        *,
        cost: CostModel | float = 0.0,
        capabilities: Capabilities | None = None,
        version: str = "1",
    ) -> None:
        super().__init__(name, cost=cost, capabilities=capabilities, version=version)
        self.model = model
        self.classes = tuple(classes)

    def _predict_raw(self, batch: Sequence[Any]) -> Sequence[RawOutput]:
        probs = self.model.proba(list(batch))
        return [RawOutput(self.classes[int(row.argmax())], row) for row in probs]

    def predict_one(self, x: Any, length: int = 0) -> Prediction:
        version = self._version
        started = time.perf_counter()
        try:
            probs = self.model.proba_one(x)
        except TierswitchError:
            raise
        except Exception as exc:  # any model error names this tier
            raise TierFailure(self.name, f"{type(exc).__name__}: {exc}") from exc
        elapsed = time.perf_counter() - started
        raw = RawOutput(self.classes[int(probs.argmax())], probs)
        return make_prediction(raw, self.name, version, self.cost_model.cost(length), elapsed)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "model": self.model.kind, "parameter_bytes": self.model.nbytes()}


def measure_latency_us(call: Callable[[Any], Any], inputs: Sequence[Any], repeat: int = 3) -> float:
    """Median wall time of ``call(x)`` in microseconds over ``inputs`` (after one warm-up pass)."""
    if not inputs:
        raise ConfigError("demo.calibration", "needs at least one input to time")
    from tierswitch.distill.attach import median_latency_s  # distillation's own timer (imports torch lazily)

    for x in inputs[: min(20, len(inputs))]:
        call(x)
    return median_latency_s(call, inputs, repeat) * 1e6


def price_for(role: str, source: str, measured_us: Mapping[str, float] | None = None) -> float:
    """The per-request cost of a tier of ``role`` under ``source``."""
    if source == "table":
        return PRICE_TABLE[role]
    if source == "measured":
        if measured_us is None or role not in measured_us:
            raise ConfigError("demo.costs", f"no measured latency for the {role} tier")
        return round(measured_us[role], 2)
    raise ConfigError("demo.costs", f"must be one of {list(COST_SOURCES)}, got {source!r}")
