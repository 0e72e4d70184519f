"""The ``Estimator`` seam: features and a complexity score in [0, 1] for each input.

Estimators never name tiers (a probe tier is named by the router config, not used here) and never threshold:
policies do that, so ``tune`` can calibrate thresholds on score quantiles without touching the estimator.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from tierswitch.errors import ConfigError
from tierswitch.estimator.features import extract_features
from tierswitch.types import Features, Prediction
from tierswitch.validation import describe

__all__ = ["Estimator", "uncertainty_of"]


def uncertainty_of(prediction: Prediction, kind: str = "confidence") -> float | None:
    """Uncertainty in [0, 1] of a probe's prediction.

    ``confidence``: 1 - top probability (or 1 - confidence); ``margin``: 1 - (top1 - top2);
    ``entropy``: entropy of the class probabilities divided by log(K). None when the prediction has neither
    probabilities nor a confidence.
    """
    probs = prediction.probs
    if probs is None or probs.size == 0:
        if prediction.confidence is None:
            return None
        return min(1.0, max(0.0, 1.0 - prediction.confidence))
    if kind == "confidence":
        return min(1.0, max(0.0, 1.0 - float(probs.max())))
    if kind == "margin":
        if probs.size < 2:
            return 0.0
        top2 = np.partition(probs.ravel(), -2)[-2:]
        return min(1.0, max(0.0, 1.0 - float(top2[1] - top2[0])))
    if kind == "entropy":
        if probs.size < 2:
            return 0.0
        p = probs.ravel()
        p = p[p > 0]
        # clamped both ways like the other kinds: a tier's "probabilities" need not sum to 1
        return min(1.0, max(0.0, float(-(p * np.log(p)).sum() / math.log(probs.size))))
    raise ConfigError("estimator.uncertainty", f"unknown uncertainty kind {describe(kind)}; use confidence, "
                                               f"margin or entropy")


class Estimator(ABC):
    """Turns an input into ``Features`` and a complexity score in [0, 1] (higher: needs a stronger tier).

    ``probe`` names a cheap tier whose prediction supplies the uncertainty feature; the router runs it before
    deciding (and reuses its answer if the policy then picks that tier). ``uncertainty`` chooses how the probe's
    prediction becomes a number (confidence, margin or entropy).
    """

    probe: str | None = None
    uncertainty: str = "confidence"

    def features(self, x: Any, modality: str | None = None) -> Features:
        """Measure one input (no probe)."""
        return extract_features(x, modality)

    @abstractmethod
    def score_features(self, features: Features, x: Any) -> float:
        """The complexity score of an input whose features are known (uncertainty filled in if probed)."""

    def score_one(self, x: Any, modality: str | None = None, probe: Prediction | None = None) -> float:
        """Score one input; ``probe`` is a cheap tier's prediction for it, when there is one."""
        features = self.features(x, modality)
        if probe is not None:
            features.uncertainty = uncertainty_of(probe, self.uncertainty)
        return self.score_features(features, x)

    def score_many(self, xs: Sequence[Any], probes: Iterable[Prediction | None] | None = None) -> np.ndarray:
        """Score many inputs; estimators with a vectorised path override this."""
        probe_list = list(probes) if probes is not None else [None] * len(xs)
        return np.array([self.score_one(x, probe=p) for x, p in zip(xs, probe_list)], dtype=np.float64)

    def fit(self, xs: Sequence[Any], y: Any) -> Estimator:
        """Learn from logged outcomes; the heuristic estimator has nothing to learn and returns itself."""
        return self
