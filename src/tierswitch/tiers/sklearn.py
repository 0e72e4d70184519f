"""``SklearnTier``: a fitted scikit-learn classifier (anything with ``predict_proba`` and ``classes_``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from tierswitch.errors import ConfigError
from tierswitch.tiers.base import Capabilities, CostModel, RawOutput, Tier

__all__ = ["SklearnTier"]


class SklearnTier(Tier):
    """Serve a fitted classifier in batches: ``preprocess(list_of_inputs)`` builds the model's input (default:
    the list itself for pipelines over text, or ``np.stack`` for arrays); the output is the top class label and
    ``probs`` is the ``predict_proba`` row (so cascades and probes can read the confidence)."""

    def __init__(
        self,
        name: str,
        model: Any,
        *,
        preprocess: Callable[[list[Any]], Any] | None = None,
        cost: CostModel | float = 0.0,
        capabilities: Capabilities | None = None,
        version: str = "1",
    ) -> None:
        super().__init__(name, cost=cost, capabilities=capabilities, version=version)
        if not hasattr(model, "predict_proba"):
            raise ConfigError("tier.model", f"tier {name!r}: the model needs predict_proba, got a "
                                            f"{type(model).__name__}; wrap other models in a CallableTier")
        self.model = model
        self.preprocess = preprocess

    def _model_input(self, batch: Sequence[Any]) -> Any:
        items = list(batch)
        if self.preprocess is not None:
            return self.preprocess(items)
        if items and isinstance(items[0], np.ndarray):
            return np.stack([np.asarray(x).ravel() for x in items])
        return items

    def _predict_raw(self, batch: Sequence[Any]) -> Sequence[RawOutput]:
        probs = np.asarray(self.model.predict_proba(self._model_input(batch)), dtype=np.float64)
        classes = self.model.classes_
        top = probs.argmax(axis=1)
        return [RawOutput(classes[j].item() if hasattr(classes[j], "item") else classes[j], probs[i])
                for i, j in enumerate(top)]
