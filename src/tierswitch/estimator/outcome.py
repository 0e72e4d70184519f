"""``TierOutcomeModel``: calibrated P(tier i answers right | input) for every one of N tiers.

Two outcome models, chosen (or blended) by cross-validation inside the rows given to ``fit``:

- ``ridge``: the ``LearnedEstimator`` (dense counts + hashed word n-grams + categorical columns, one ridge output per
  tier, its penalty and n-gram weight picked by its own CV);
- ``knn``: similarity routing: the mean outcome of the ``k`` most similar training inputs (cosine over hashed
  n-grams, or over the vectors of a pluggable ``embedder``: any ``Callable[[list[str]], ndarray]``, e.g.
  ``tierswitch.estimator.embed.SentenceTransformerEmbedder(path)``), ``k`` picked by CV.

Each tier's raw prediction is then calibrated with Platt scaling fitted on out-of-fold predictions of the training
rows (so the calibrator never sees a prediction made on its own row), and the reliability (ECE, Brier) before and
after calibration is kept in ``fit_report()``. The blend weight between the two models is chosen on the same
out-of-fold predictions (Brier score). Nothing here ever looks at evaluation rows: callers give ``fit`` training
rows only.

``tier_probabilities(x, features)`` serves ``tierswitch.policies.learned.LearnedPolicy`` (the cost-aware rules);
``score_one`` keeps the 2-tier score path: ``0.5 + 0.5 * (p_full - p_cheapest)``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tierswitch.errors import ConfigError, NotFittedError
from tierswitch.estimator.base import Estimator
from tierswitch.estimator.learned import LearnedEstimator
from tierswitch.estimator.learned_features import analyse, bucket, text_of
from tierswitch.estimator.outcome_parts import HASH_DIM, Embedder, Knn, logit, reliability, sigmoid
from tierswitch.types import Features

__all__ = ["TierOutcomeModel", "from_config", "reliability"]

FORMAT = "tierswitch.outcome/1"
class TierOutcomeModel(Estimator):
    """Calibrated per-tier outcome model (see the module docstring). Parameters are stored verbatim; learned state
    ends in ``_``.

    ``models``: which outcome models CV may use (``"ridge"``, ``"knn"``); ``ks``: neighbour counts tried;
    ``categorical`` / ``numeric``: dict-input fields used as features; ``embedder``: optional text embedder for the
    similarity model; ``calibrate``: Platt-scale each tier on out-of-fold predictions; ``cv_folds``, ``seed``.
    """

    def __init__(
        self,
        *,
        models: Sequence[str] = ("ridge", "knn"),
        ks: Sequence[int] = (10, 25, 50),
        categorical: Sequence[str] = (),
        numeric: Sequence[str] = (),
        embedder: Embedder | None = None,
        calibrate: bool = True,
        cv_folds: int = 5,
        seed: int = 0,
        ridge: Mapping[str, Any] | None = None,
    ) -> None:
        self.models = tuple(models)
        if not self.models or any(m not in ("ridge", "knn") for m in self.models):
            raise ConfigError("estimator.models", f"must name 'ridge' and/or 'knn', got {list(self.models)}")
        self.ks = tuple(int(k) for k in ks)
        if not self.ks or any(k < 1 for k in self.ks):
            raise ConfigError("estimator.ks", f"must be positive integers, got {list(ks)}")
        self.categorical = tuple(categorical)
        self.numeric = tuple(numeric)
        self.embedder = embedder
        self.calibrate = bool(calibrate)
        if isinstance(cv_folds, bool) or not isinstance(cv_folds, int) or cv_folds < 2:
            raise ConfigError("estimator.cv_folds", f"must be an integer >= 2, got {cv_folds!r}")
        self.cv_folds = cv_folds
        self.seed = seed
        self.ridge = dict(ridge or {})
        self.tiers_: tuple[str, ...] = ()
        self.ridge_: LearnedEstimator | None = None
        self.knn_: Knn | None = None
        self.blend_: float = 1.0  # weight of the ridge model (1 - weight on knn)
        self.platt_: list[tuple[float, float]] = []
        self.report_: dict[str, Any] | None = None
        self.oof_: np.ndarray | None = None  # out-of-fold calibrated probabilities of the training rows (memory only)
        self._fast: list[tuple[float, list[float], dict[int, float]]] | None = None
        self.path_: Path | None = None

    # -- features ---------------------------------------------------------------------------------------------
    def _ridge_params(self, **fixed: Any) -> dict[str, Any]:
        return {"numeric": list(self.numeric), "categorical": list(self.categorical), "seed": self.seed,
                "cv_folds": self.cv_folds, **self.ridge, **fixed}

    def _vectors(self, xs: Sequence[Any]) -> Any:
        """L2-normalised vectors for the similarity model: the embedder's, or binary hashed n-grams."""
        if self.embedder is not None:
            emb = np.asarray(self.embedder([text_of(x) for x in xs]), dtype=np.float64)
            if emb.ndim != 2 or len(emb) != len(xs) or not np.isfinite(emb).all():
                raise ConfigError("estimator.embedder", f"must return a finite (n, d) array, got shape {emb.shape}")
            return emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        from scipy import sparse

        rows: list[list[int]] = []
        for x in xs:
            _, grams = analyse(text_of(x))
            grams.update(_categorical_grams(x, self.categorical))
            rows.append(sorted({bucket(g) % HASH_DIM for g in grams}))
        indptr = np.cumsum([0] + [len(r) for r in rows])
        idx = np.fromiter((c for r in rows for c in r), dtype=np.int64, count=int(indptr[-1]))
        vals = np.fromiter((1.0 / math.sqrt(len(r)) for r in rows for _ in r), dtype=np.float64, count=len(idx))
        return sparse.csr_matrix((vals, idx, indptr), shape=(len(rows), HASH_DIM))

    # -- fitting ----------------------------------------------------------------------------------------------
    def fit(self, xs: Sequence[Any], y: Any, tiers: Sequence[str] | None = None,
            progress: bool = False) -> TierOutcomeModel:
        """Fit on training rows ``xs`` and per-tier outcomes ``y`` ``(n, T)``, tiers cheapest first."""
        from tierswitch.estimator.outcome_fit import fit_outcome

        xs = list(xs)
        Y = np.asarray(y, dtype=np.float64)
        if Y.ndim != 2 or Y.shape[1] < 2 or len(Y) != len(xs):
            raise ConfigError("y", f"must have shape (n={len(xs)}, tiers>=2), got {Y.shape}")
        if not np.isfinite(Y).all() or Y.min() < 0 or Y.max() > 1:
            raise ConfigError("y", "outcomes must be finite and within [0, 1]")
        names = tuple(tiers) if tiers is not None else tuple(f"tier{j}" for j in range(Y.shape[1]))
        if len(names) != Y.shape[1]:
            raise ConfigError("tiers", f"names {len(names)} tiers for {Y.shape[1]} outcome columns")
        fit_outcome(self, xs, Y, names, progress)
        self.path_ = None
        return self

    @property
    def fitted(self) -> bool:
        return self.report_ is not None

    def fit_report(self) -> dict[str, Any]:
        """What fit chose and saw: models, blend weight, k, ridge choices, per-tier reliability (out of fold)."""
        if self.report_ is None:
            raise NotFittedError("TierOutcomeModel is not fitted; call fit(xs, y, tiers) or load a saved one")
        return dict(self.report_)

    # -- prediction -------------------------------------------------------------------------------------------
    def raw_many(self, xs: Sequence[Any]) -> np.ndarray:
        """Uncalibrated per-tier predictions ``(n, T)`` of the (blended) outcome models."""
        self.fit_report()
        parts = np.zeros((len(xs), len(self.tiers_)))
        if self.blend_ > 0 and self.ridge_ is not None:
            parts += self.blend_ * np.vstack([self.ridge_.raw_outputs(x) for x in xs])
        if self.blend_ < 1 and self.knn_ is not None:
            parts += (1 - self.blend_) * self.knn_.predict(self._vectors(xs))
        return np.clip(parts, 0.0, 1.0)

    def calibrated(self, raw: np.ndarray) -> np.ndarray:
        if not self.platt_:
            return raw
        return np.column_stack([sigmoid(a * logit(raw[:, j]) + b) for j, (a, b) in enumerate(self.platt_)])

    def predict_proba(self, xs: Sequence[Any]) -> np.ndarray:
        """Calibrated P(tier right) per row and tier, ``(n, T)``, tiers cheapest first."""
        return self.calibrated(self.raw_many(xs))

    def tier_probabilities(self, x: Any, features: Features | None = None) -> dict[str, float]:
        """Calibrated P(right) per tier for one request (the serving path: plain Python for a ridge-only model)."""
        if self.blend_ == 1.0 and self.ridge_ is not None and self.platt_:
            return self._fast_probabilities(x)
        p = self.predict_proba([x])[0]
        return {t: float(v) for t, v in zip(self.tiers_, p)}

    def _fast_probabilities(self, x: Any) -> dict[str, float]:
        fast = self._fast
        if fast is None:
            state = self.ridge_._require()  # type: ignore[union-attr]
            fast = self._fast = [
                (float(state["bias"][j]), [float(v) for v in state["dense_w"][j]],
                 {int(b): float(w) for b, w in zip(state["buckets"], state["bucket_w"][j]) if w != 0.0})
                for j in range(len(self.tiers_))]
        dense, grams = self.ridge_._row(x)  # type: ignore[union-attr]
        hashes = [bucket(g) for g in grams]
        scale = 1.0 / math.sqrt(len(grams)) if grams else 0.0
        out = {}
        for t, (bias, dense_w, weights), (a, b) in zip(self.tiers_, fast, self.platt_):
            get = weights.get
            raw = bias + math.fsum(map(float.__mul__, dense_w, dense)) + scale * math.fsum(
                filter(None, map(get, hashes)))
            raw = min(1 - 1e-4, max(1e-4, raw))
            z = max(-30.0, min(30.0, a * math.log(raw / (1 - raw)) + b))
            out[t] = 1.0 / (1.0 + math.exp(-z))
        return out

    def score_many(self, xs: Sequence[Any], probes: Any = None) -> np.ndarray:
        p = self.predict_proba(xs)
        return np.asarray(np.clip(0.5 + 0.5 * (p[:, -1] - p[:, 0]), 0.0, 1.0))

    def score_one(self, x: Any, modality: str | None = None, probe: Any = None) -> float:
        return float(self.score_many([x])[0])

    def score_features(self, features: Features, x: Any) -> float:
        return self.score_one(x)

    # -- persistence ------------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """``path/outcome.json`` plus the ridge model in ``path/ridge``; a similarity model is saved as arrays
        (``knn.npz``, no pickle). A model with an ``embedder`` saves the embedder's ``to_config`` when it has one."""
        from tierswitch.estimator.outcome_fit import save_outcome

        self.fit_report()
        self.path_ = save_outcome(self, Path(path))
        return self.path_

    @classmethod
    def load(cls, path: str | Path, embedder: Embedder | None = None) -> TierOutcomeModel:
        from tierswitch.estimator.outcome_fit import load_outcome

        model: TierOutcomeModel = load_outcome(cls, Path(path), embedder)
        model.path_ = Path(path)
        return model

    def to_config(self) -> dict[str, Any]:
        if self.path_ is None:
            raise NotImplementedError("save the TierOutcomeModel first; its config is {kind: outcome, path: DIR}")
        return {"kind": "outcome", "path": str(self.path_)}

    def __repr__(self) -> str:
        return f"TierOutcomeModel(fitted={self.fitted}, tiers={list(self.tiers_)})"


def _categorical_grams(x: Any, names: Sequence[str]) -> set[str]:
    if not names or not isinstance(x, Mapping):
        return set()
    return {f"\x00{n}={x.get(n)}" for n in names}


def from_config(config: Mapping[str, Any], field: str = "estimator") -> TierOutcomeModel:
    """``{"kind": "outcome", "path": DIR}``: load a saved ``TierOutcomeModel``."""
    options = {k: v for k, v in config.items() if k != "kind"}
    path = options.get("path")
    if set(options) != {"path"} or not isinstance(path, str) or not path:
        raise ConfigError(f"{field}.path", "kind 'outcome' takes only 'path': the directory of a saved model")
    try:
        return TierOutcomeModel.load(path)
    except ConfigError as exc:
        raise ConfigError(f"{field}.path", str(exc).split(": ", 1)[-1]) from exc


def _dumps(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True)
