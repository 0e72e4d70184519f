"""The promoted student's forward pass exported to numpy: the hot path pays no per-op torch dispatch.

``NumpyMLP`` holds each Linear layer's weight transposed (in, out) as contiguous float32 and its bias. A sparse
input row (the hashed-text featuriser's) goes through the first layer as a gather of the rows it touches
(``vals @ W1[cols]``), so its cost does not grow with the featuriser's width. INT8 students keep their torch
quantized kernels (``torch.ao``), which this module does not replace.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["NumpyMLP"]


class NumpyMLP:
    """Logits of an MLP (ReLU between layers) from its float state dict ("0.weight", "0.bias", "2.weight" ...)."""

    def __init__(self, layers: Sequence[tuple[np.ndarray, np.ndarray]]) -> None:
        self.layers = [(np.ascontiguousarray(w, dtype=np.float32), np.asarray(b, dtype=np.float32))
                       for w, b in layers]

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> NumpyMLP:
        """From a torch state dict (tensors or arrays) of ``build_student``'s Sequential."""
        index = sorted({int(k.split(".")[0]) for k in state if k.endswith(".weight")})
        layers = []
        for i in index:
            w, b = state[f"{i}.weight"], state[f"{i}.bias"]
            w = w.detach().cpu().numpy() if hasattr(w, "detach") else np.asarray(w)
            b = b.detach().cpu().numpy() if hasattr(b, "detach") else np.asarray(b)
            layers.append((w.T, b))
        return cls(layers)

    @classmethod
    def from_module(cls, module: Any) -> NumpyMLP | None:
        """From a float ``nn.Sequential`` of Linear/ReLU; None for anything else (quantized, custom)."""
        from torch import nn

        if not isinstance(module, nn.Sequential) or not all(
                isinstance(m, (nn.Linear, nn.ReLU)) for m in module):
            return None
        return cls.from_state_dict(module.state_dict())

    @property
    def input_dim(self) -> int:
        return int(self.layers[0][0].shape[0])

    def _rest(self, h: np.ndarray) -> np.ndarray:
        for w, b in self.layers[1:]:
            np.maximum(h, 0.0, out=h)
            h = h @ w + b
        return h

    def logits(self, x: np.ndarray) -> np.ndarray:
        """(n, n_classes) logits of a dense (n, input_dim) float32 batch."""
        w, b = self.layers[0]
        return self._rest(np.asarray(x, dtype=np.float32) @ w + b)

    def logits_sparse(self, rows: Sequence[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        """(n, n_classes) logits of sparse rows (column indices, values)."""
        w, b = self.layers[0]
        h = np.empty((len(rows), w.shape[1]), dtype=np.float32)
        for i, (cols, vals) in enumerate(rows):
            h[i] = vals @ w[cols] + b if len(cols) else b
        return self._rest(h)

    @staticmethod
    def softmax(z: np.ndarray) -> np.ndarray:
        z = z.astype(np.float64) - z.max(axis=1, keepdims=True)
        np.exp(z, out=z)
        z /= z.sum(axis=1, keepdims=True)
        return z
