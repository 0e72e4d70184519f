"""The default, hand-weighted complexity estimator: length, modality and probe uncertainty."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from tierswitch.errors import ConfigError
from tierswitch.estimator.base import Estimator
from tierswitch.types import MODALITIES, Features
from tierswitch.validation import describe, positive

__all__ = ["ComplexityEstimator"]

DEFAULT_MODALITY_PRIOR: Mapping[str, float] = {"text": 0.0, "tabular": 0.0, "image": 0.25, "multimodal": 0.5}


class ComplexityEstimator(Estimator):
    """Score = weighted mean of three terms, each in [0, 1]:

    - length: ``log1p(length) / log1p(length_scale)``, capped at 1 (an input of ``length_scale`` units or more
      counts as long);
    - modality: a prior per modality (``modality_prior``), e.g. multimodal inputs are harder;
    - uncertainty: from the probe tier's prediction, when a probe is configured (its weight is dropped
      otherwise, so the other terms still span [0, 1]).
    """

    def __init__(
        self,
        *,
        length_weight: float = 1.0,
        length_scale: int = 512,
        modality_weight: float = 0.0,
        modality_prior: Mapping[str, float] | None = None,
        uncertainty_weight: float = 1.0,
        probe: str | None = None,
        uncertainty: str = "confidence",
    ) -> None:
        for name, value in (
            ("length_weight", length_weight),
            ("modality_weight", modality_weight),
            ("uncertainty_weight", uncertainty_weight),
        ):
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ConfigError(f"estimator.{name}", f"must be a finite number >= 0, got {describe(value)}")
        positive("estimator.length_scale", length_scale, integer=True)
        if uncertainty not in ("confidence", "margin", "entropy"):
            raise ConfigError("estimator.uncertainty", f"must be confidence, margin or entropy, got "
                                                       f"{describe(uncertainty)}")
        prior = dict(DEFAULT_MODALITY_PRIOR if modality_prior is None else modality_prior)
        for key, value in prior.items():
            is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if key not in MODALITIES or not is_number or not 0.0 <= value <= 1.0:
                raise ConfigError(f"estimator.modality_prior.{key}", "needs a known modality and a value in [0, 1]")
        self.length_weight = length_weight
        self.length_scale = length_scale
        self.modality_weight = modality_weight
        self.modality_prior = prior
        self.uncertainty_weight = uncertainty_weight
        self.probe = probe
        self.uncertainty = uncertainty
        self._log_scale = math.log1p(length_scale)

    def score_features(self, features: Features, x: Any = None) -> float:
        total = self.length_weight * min(1.0, math.log1p(features.length) / self._log_scale)
        weight = self.length_weight
        if self.modality_weight:
            total += self.modality_weight * self.modality_prior.get(features.modality, 0.0)
            weight += self.modality_weight
        if features.uncertainty is not None and self.uncertainty_weight:
            total += self.uncertainty_weight * features.uncertainty
            weight += self.uncertainty_weight
        return total / weight if weight else 0.0

    def to_config(self) -> dict[str, Any]:
        return {
            "kind": "complexity",
            "length_weight": self.length_weight,
            "length_scale": self.length_scale,
            "modality_weight": self.modality_weight,
            "modality_prior": dict(self.modality_prior),
            "uncertainty_weight": self.uncertainty_weight,
            "probe": self.probe,
            "uncertainty": self.uncertainty,
        }
