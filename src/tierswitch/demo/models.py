"""The demo's trained models as plain numpy: class probabilities for one input (fast path) or many.

Each model round-trips through ``to_bundle() -> (meta, arrays)`` and ``from_bundle(meta, arrays)`` (JSON + numeric
arrays, see ``store``), so nothing is pickled. Inference is a sparse gather or a small matmul, with no per-call
framework overhead: that keeps the measured latencies about the models, not the glue.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import scipy.sparse as sp

from tierswitch.demo.textfeat import HashedText, TfidfSpace

__all__ = ["DemoModel", "LinearHead", "MLPModel", "MODEL_KINDS", "PooledLinear", "TextLinear", "TfidfEnsemble",
           "model_from_bundle"]


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=-1, keepdims=True)
    return z


class DemoModel(Protocol):
    kind: str

    def proba_one(self, x: Any) -> np.ndarray: ...

    def proba(self, xs: Sequence[Any]) -> np.ndarray: ...

    def nbytes(self) -> int: ...

    def to_bundle(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]: ...


class LinearHead:
    """Multinomial logistic regression: ``softmax(x @ weight + bias)``; ``weight`` is (n_features, n_classes)."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray) -> None:
        self.weight = np.ascontiguousarray(weight, dtype=np.float32)
        self.bias = np.asarray(bias, dtype=np.float64)

    @classmethod
    def from_sklearn(cls, lr: Any) -> LinearHead:
        return cls(np.asarray(lr.coef_).T, np.asarray(lr.intercept_))

    def logits_sparse(self, cols: np.ndarray, vals: np.ndarray) -> np.ndarray:
        return np.asarray(vals @ self.weight[cols] + self.bias)

    def proba_sparse(self, cols: np.ndarray, vals: np.ndarray) -> np.ndarray:
        return _softmax(self.logits_sparse(cols, vals))

    def proba_matrix(self, x: np.ndarray | sp.spmatrix) -> np.ndarray:
        return _softmax(np.asarray(x @ self.weight, dtype=np.float64) + self.bias)

    def nbytes(self) -> int:
        return self.weight.nbytes + self.bias.nbytes


class TextLinear:
    """Hashed word n-grams -> linear model (the text ``base`` tier)."""

    kind = "text_linear"

    def __init__(self, features: HashedText, head: LinearHead) -> None:
        self.features = features
        self.head = head

    def proba_one(self, x: str) -> np.ndarray:
        return self.head.proba_sparse(*self.features.sparse_one(x))

    def proba(self, xs: Sequence[str]) -> np.ndarray:
        return self.head.proba_matrix(self.features.transform(xs))

    def nbytes(self) -> int:
        return self.head.nbytes()

    def to_bundle(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {"kind": self.kind, "features": self.features.config()}, {"w": self.head.weight, "b": self.head.bias}

    @classmethod
    def from_bundle(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> TextLinear:
        f = meta["features"]
        chars = tuple(f["chars"]) if f.get("chars") else None
        features = HashedText(int(f["dim"]), words=int(f["words"]), chars=chars, sublinear=bool(f["sublinear"]))
        return cls(features, LinearHead(arrays["w"], arrays["b"]))


class TfidfEnsemble:
    """Several TF-IDF spaces (word and character n-grams), one linear model each, probabilities averaged
    (the text ``full`` tier)."""

    kind = "tfidf_ensemble"

    def __init__(self, members: Sequence[tuple[TfidfSpace, LinearHead]]) -> None:
        self.members = list(members)

    def proba_one(self, x: str) -> np.ndarray:
        total = np.zeros(len(self.members[0][1].bias))
        for space, head in self.members:
            total += head.proba_sparse(*space.sparse_one(x))
        return total / len(self.members)

    def proba(self, xs: Sequence[str]) -> np.ndarray:
        total = sum(head.proba_matrix(space.transform(xs)) for space, head in self.members)
        return np.asarray(total) / len(self.members)

    def nbytes(self) -> int:
        return sum(head.nbytes() + space.idf.nbytes for space, head in self.members)

    def vocabulary_size(self) -> int:
        return sum(len(space.vocabulary) for space, _ in self.members)

    def to_bundle(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        meta = {"kind": self.kind, "members": [
            {"analyzer": list(space.analyzer), "vocabulary": space.vocabulary} for space, _ in self.members
        ]}
        arrays: dict[str, np.ndarray] = {}
        for i, (space, head) in enumerate(self.members):
            arrays[f"idf{i}"] = space.idf
            arrays[f"w{i}"] = head.weight
            arrays[f"b{i}"] = head.bias
        return meta, arrays

    @classmethod
    def from_bundle(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> TfidfEnsemble:
        members = []
        for i, m in enumerate(meta["members"]):
            space = TfidfSpace(m["analyzer"], m["vocabulary"], arrays[f"idf{i}"])
            members.append((space, LinearHead(arrays[f"w{i}"], arrays[f"b{i}"])))
        return cls(members)


def pool_image(image: np.ndarray, k: int) -> np.ndarray:
    """Average-pool a (h, w) image by ``k`` and scale digits' 0..16 range to 0..1, flattened."""
    h, w = image.shape[-2:]
    return np.asarray(image.reshape(h // k, k, w // k, k).mean(axis=(1, 3)).reshape(-1)) / 16.0


class PooledLinear:
    """A coarse (pooled) image -> linear model (the digits ``base`` tier)."""

    kind = "pooled_linear"

    def __init__(self, pool: int, head: LinearHead) -> None:
        self.pool = pool
        self.head = head

    def proba_one(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.head.proba_matrix(pool_image(np.asarray(x, dtype=np.float64), self.pool)[None, :])[0])

    def proba(self, xs: Sequence[np.ndarray]) -> np.ndarray:
        return self.head.proba_matrix(np.stack([pool_image(np.asarray(x, np.float64), self.pool) for x in xs]))

    def nbytes(self) -> int:
        return self.head.nbytes()

    def to_bundle(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {"kind": self.kind, "pool": self.pool}, {"w": self.head.weight, "b": self.head.bias}

    @classmethod
    def from_bundle(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> PooledLinear:
        return cls(int(meta["pool"]), LinearHead(arrays["w"], arrays["b"]))


class MLPModel:
    """A ReLU multi-layer perceptron over the flattened image scaled to 0..1 (the digits ``full`` tier)."""

    kind = "mlp"

    def __init__(self, weights: Sequence[np.ndarray], biases: Sequence[np.ndarray]) -> None:
        self.weights = [np.ascontiguousarray(w, dtype=np.float32) for w in weights]
        self.biases = [np.asarray(b, dtype=np.float32) for b in biases]

    @classmethod
    def from_sklearn(cls, mlp: Any) -> MLPModel:
        return cls(mlp.coefs_, mlp.intercepts_)

    def _forward(self, x: np.ndarray) -> np.ndarray:
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            x = x @ w + b
            if i < len(self.weights) - 1:
                np.maximum(x, 0, out=x)
        return _softmax(x.astype(np.float64))

    def proba_one(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self._forward(np.asarray(x, dtype=np.float32).reshape(1, -1) / 16.0)[0])

    def proba(self, xs: Sequence[np.ndarray]) -> np.ndarray:
        return self._forward(np.stack([np.asarray(x, np.float32).reshape(-1) for x in xs]) / 16.0)

    def nbytes(self) -> int:
        return sum(w.nbytes + b.nbytes for w, b in zip(self.weights, self.biases))

    def to_bundle(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        arrays = {f"w{i}": w for i, w in enumerate(self.weights)}
        arrays.update({f"b{i}": b for i, b in enumerate(self.biases)})
        return {"kind": self.kind, "layers": len(self.weights)}, arrays

    @classmethod
    def from_bundle(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> MLPModel:
        n = int(meta["layers"])
        return cls([arrays[f"w{i}"] for i in range(n)], [arrays[f"b{i}"] for i in range(n)])


MODEL_KINDS = {c.kind: c for c in (TextLinear, TfidfEnsemble, PooledLinear, MLPModel)}


def model_from_bundle(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> DemoModel:
    """Rebuild any demo model from its bundle (``meta['kind']`` picks the class)."""
    return MODEL_KINDS[meta["kind"]].from_bundle(meta, arrays)
