"""Seeded train/test splits and k-fold partitions, with a record of which rows trained what."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tierswitch.errors import ConfigError
from tierswitch.validation import describe

__all__ = ["Split", "holdout", "kfold"]


@dataclass(frozen=True)
class Split:
    """Row positions used to train (``train``) and to evaluate (``test``); ``name`` says how it was drawn."""

    name: str
    train: np.ndarray
    test: np.ndarray

    def describe(self, ids: Sequence[str]) -> dict[str, object]:
        """The row ids on each side, for reports (so every figure says which rows trained the model behind it)."""
        return {"name": self.name, "train_ids": [ids[i] for i in self.train], "test_ids": [ids[i] for i in self.test]}


def holdout(n: int, test_size: float = 0.5, seed: int = 0) -> Split:
    """A random split of ``n`` rows: ``round(n * test_size)`` test rows, drawn with ``numpy``'s PCG64 from
    ``seed``. Both sides are returned sorted (row order is kept within each side)."""
    if not 0.0 < test_size < 1.0:
        raise ConfigError("test_size", f"must be within (0, 1), got {describe(test_size)}")
    n_test = int(round(n * test_size))
    if n_test < 1 or n - n_test < 1:
        raise ConfigError("test_size", f"leaves an empty side with {n} rows")
    order = np.random.default_rng(seed).permutation(n)
    return Split(f"holdout seed={seed} test_size={test_size:g}", np.sort(order[n_test:]), np.sort(order[:n_test]))


def kfold(n: int, k: int = 5, seed: int = 0) -> list[Split]:
    """``k`` folds of a seeded permutation; fold ``i`` tests on its rows and trains on all the others."""
    if isinstance(k, bool) or not isinstance(k, int) or not 2 <= k <= n:
        raise ConfigError("folds", f"must be an integer in [2, rows={n}], got {describe(k)}")
    parts = np.array_split(np.random.default_rng(seed).permutation(n), k)
    return [
        Split(f"fold {i + 1}/{k} seed={seed}", np.sort(np.concatenate([p for j, p in enumerate(parts) if j != i])),
              np.sort(part))
        for i, part in enumerate(parts)
    ]
