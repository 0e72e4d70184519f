"""Fitting for ``LearnedEstimator``: scikit-learn ridge regression over a cross-validated grid.

The target is either per-tier outcomes ``y`` of shape ``(n, T)`` (tiers cheapest first; each column is correctness
in [0, 1]) or one column ``(n,)`` saying how much the expensive tier is needed. With per-tier outcomes one ridge
output per tier is learned. Regularisation (``alphas``) and the weight of the n-gram block against the dense block
(``ngram_weights``) are chosen by k-fold cross-validation on the data given to ``fit``; the winner is refitted on all
rows and folded back into plain arrays in the raw (unstandardised) feature space, which
``tierswitch.estimator.learned`` turns into its serving state. Imported only when fitting, so scipy and sklearn stay
out of serving processes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol

import numpy as np
from scipy import sparse
from sklearn.linear_model import Ridge
from sklearn.model_selection import KFold

from tierswitch.errors import ConfigError


class FitSettings(Protocol):
    """What ``fit_ridge`` reads from the estimator (structural, so this module never imports ``learned``: the
    dependency runs one way, ``learned`` -> ``learned_fit``, imported inside ``fit``)."""

    alphas: tuple[float, ...]
    ngram_weights: tuple[float, ...]
    cv_folds: int
    seed: int

    def design(self, xs: Sequence[Any]) -> tuple[np.ndarray, list[list[int]]]: ...

__all__ = ["FitSettings", "RidgeFit", "fit_ridge"]


class RidgeFit(NamedTuple):
    """What a fit produced: the arrays the serving state is made from, plus the sklearn model it came from."""

    target: str  # "gain" (per-tier outcomes) or "need" (one column)
    dense_w: np.ndarray  # (outputs, dense features), applied to raw features
    bias: np.ndarray  # (outputs,)
    buckets: np.ndarray  # hash buckets with a non-zero weight
    bucket_w: np.ndarray  # (outputs, buckets)
    report: dict[str, Any]  # what fit chose and saw (``LearnedEstimator.fit_report``)
    sklearn: tuple[Any, Any]  # the fitted Ridge and its design matrix: kept in memory only, for benchmarks and checks


def _outcomes(y: Any, n: int) -> tuple[np.ndarray, str]:
    try:
        Y = np.asarray(y, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ConfigError("y", f"outcomes must be numbers in [0, 1]: {exc}") from exc
    if Y.ndim == 1:
        Y, target = Y[:, None], "need"
    elif Y.ndim == 2 and Y.shape[1] >= 2:
        target = "gain"
    else:
        raise ConfigError("y", f"must have shape (n,) or (n, tiers>=2), got {Y.shape}")
    if len(Y) != n:
        raise ConfigError("y", f"has {len(Y)} rows for {n} inputs")
    if not np.isfinite(Y).all() or Y.min() < 0 or Y.max() > 1:
        raise ConfigError("y", "outcomes must be finite and within [0, 1]; drop rows with missing outcomes first")
    return Y, target


def fit_ridge(est: FitSettings, xs: list[Any], y: Any, tiers: Sequence[str] | None) -> RidgeFit:
    """Fit sklearn's Ridge over ``est``'s CV grid, then fold the winner into plain arrays."""
    Y, target = _outcomes(y, len(xs))
    if len(xs) < 2 * est.cv_folds:
        raise ConfigError("xs", f"need at least {2 * est.cv_folds} rows to fit with {est.cv_folds}-fold CV")
    if tiers is not None and len(tiers) != Y.shape[1]:
        raise ConfigError("tiers", f"names {len(tiers)} tiers for {Y.shape[1]} outcome column(s)")
    dense, buckets = est.design(xs)
    mu, sd = dense.mean(axis=0), dense.std(axis=0)
    sd[sd == 0] = 1.0  # a constant feature carries no signal; keep it finite
    flat = np.fromiter((b for row in buckets for b in row), dtype=np.int64)
    used = np.unique(flat)
    indptr = np.cumsum([0] + [len(row) for row in buckets])
    cols = np.searchsorted(used, flat)
    vals = np.fromiter((1.0 / math.sqrt(len(row)) for row in buckets for _ in row), dtype=np.float64)
    grams = sparse.csr_matrix((vals, cols, indptr), shape=(len(xs), len(used)))
    grams.sum_duplicates()  # hash collisions within a row add up, as they do when scoring
    z = sparse.csr_matrix((dense - mu) / sd)
    score_y = Y[:, -1] - Y[:, 0] if target == "gain" else Y[:, 0]

    def design(k: float) -> Any:
        return sparse.hstack([z, grams * k]).tocsr() if k > 0 else z

    folds = list(KFold(est.cv_folds, shuffle=True, random_state=est.seed).split(dense))
    single = len(est.alphas) == len(est.ngram_weights) == 1  # nothing to choose: skip the CV fits
    grid: list[dict[str, Any]] = []
    for k in est.ngram_weights:
        X = design(k)
        for alpha in est.alphas:
            errors = [] if single else [
                np.mean((Ridge(alpha=alpha).fit(X[tr], score_y[tr]).predict(X[te]) - score_y[te]) ** 2)
                for tr, te in folds]
            grid.append({"ngram_weight": k, "alpha": alpha, "cv_mse": float(np.mean(errors)) if errors else None})
    best = min(grid, key=lambda g: g["cv_mse"] if g["cv_mse"] is not None else 0.0)
    model = Ridge(alpha=best["alpha"]).fit(design(best["ngram_weight"]), Y)
    coef = np.atleast_2d(model.coef_)
    n_dense = dense.shape[1]
    dense_w = coef[:, :n_dense] / sd
    bias = np.atleast_1d(model.intercept_) - dense_w @ mu
    bucket_w = coef[:, n_dense:] * best["ngram_weight"] if best["ngram_weight"] > 0 else np.zeros((len(bias), 0))
    keep = np.flatnonzero(np.any(bucket_w != 0, axis=0)) if bucket_w.size else np.zeros(0, dtype=np.int64)
    report = {"rows": len(xs), "target": target, "tiers": list(tiers) if tiers is not None else None,
              "alpha": best["alpha"], "ngram_weight": best["ngram_weight"], "cv_mse": best["cv_mse"], "grid": grid,
              "buckets": int(len(keep))}
    return RidgeFit(target, dense_w, bias, used[keep] if bucket_w.size else used[:0], bucket_w[:, keep], report,
                    (model, design(best["ngram_weight"])))
