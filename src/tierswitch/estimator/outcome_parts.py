"""The pieces of ``TierOutcomeModel`` that both the model (``outcome``) and its fitting (``outcome_fit``) use:
Platt calibration, the reliability report and the nearest-neighbour outcome model. A module of its own, so the
model and its fitting do not import each other."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["HASH_DIM", "Embedder", "Knn", "logit", "platt", "reliability", "sigmoid"]

Embedder = Callable[[list[str]], np.ndarray]
HASH_DIM = 1 << 20


def sigmoid(z: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-np.clip(z, -30.0, 30.0))))


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-4, 1 - 1e-4)
    return np.asarray(np.log(p / (1 - p)))


def platt(raw: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Platt scaling p = sigmoid(a * logit(raw) + b) by Newton's method on the log loss (a light L2 on a, b)."""
    z = logit(raw)
    a, b = 1.0, 0.0
    for _ in range(50):
        p = sigmoid(a * z + b)
        g = np.array([np.sum((p - y) * z) + 1e-3 * a, np.sum(p - y) + 1e-3 * b])
        w = p * (1 - p)
        h = np.array([[np.sum(w * z * z) + 1e-3, np.sum(w * z)], [np.sum(w * z), np.sum(w) + 1e-3]])
        try:
            step = np.linalg.solve(h, g)
        except np.linalg.LinAlgError:
            break
        a, b = a - float(step[0]), b - float(step[1])
        if float(np.abs(step).max()) < 1e-8:
            break
    return a, b


def reliability(p: np.ndarray, y: np.ndarray, bins: int = 10) -> dict[str, Any]:
    """Expected calibration error (equal-width bins, weighted by rows), Brier score and the reliability table."""
    p, y = np.asarray(p, dtype=np.float64), np.asarray(y, dtype=np.float64)
    edges = np.minimum((p * bins).astype(np.int64), bins - 1)
    table, ece = [], 0.0
    for b in range(bins):
        m = edges == b
        if m.any():
            gap = abs(float(p[m].mean()) - float(y[m].mean()))
            ece += gap * float(m.mean())
            table.append({"bin": b, "rows": int(m.sum()), "predicted": float(p[m].mean()),
                          "observed": float(y[m].mean())})
    return {"ece": ece, "brier": float(np.mean((p - y) ** 2)), "table": table}


class Knn:
    """Mean outcomes of the ``k`` nearest training rows by cosine similarity (rows are L2-normalised vectors)."""

    def __init__(self, vectors: Any, outcomes: np.ndarray, k: int) -> None:
        self.vectors, self.outcomes, self.k = vectors, outcomes, k
        self._csc: Any = None

    def predict(self, queries: Any) -> np.ndarray:
        return np.vstack([self._chunk(queries[i:i + 512]) for i in range(0, queries.shape[0], 512)]) \
            if queries.shape[0] else np.zeros((0, self.outcomes.shape[1]))

    def _chunk(self, queries: Any) -> np.ndarray:
        if hasattr(queries, "indices") and queries.shape[0] == 1:  # one request: only the columns it touches
            if self._csc is None:
                self._csc = self.vectors.tocsc()
            sims = np.asarray(self._csc[:, queries.indices] @ queries.data, dtype=np.float64).reshape(1, -1)
        else:
            product = queries @ self.vectors.T
            sims = np.asarray(product.toarray() if hasattr(product, "toarray") else product, dtype=np.float64)
        k = min(self.k, sims.shape[1])
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        weights = np.maximum(np.take_along_axis(sims, top, axis=1), 0.0) + 1e-6
        out = np.einsum("nk,nkt->nt", weights, self.outcomes[top]) / weights.sum(axis=1, keepdims=True)
        # shrink towards the tier's base rate: a neighbourhood of k rows is a noisy estimate
        prior = self.outcomes.mean(axis=0)
        return np.asarray((k * out + 2.0 * prior) / (k + 2.0))
