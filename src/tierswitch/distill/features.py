"""The student's featuriser, part of its spec: plain data any process can rebuild (no pickled callables).

- ``HashedTextFeatures`` (the text default): word 1..``words``-grams and character ``chars`` n-grams (over the
  lower-cased text, words joined by single spaces and padded) hashed into ``dim`` columns, each occurrence worth
  1/sqrt(count). A text becomes a *sparse* row (column indices, values): ~100-300 entries, never a dense vector
  per sample. Hashing is vectorised in numpy (a polynomial hash of each byte window), so one text costs tens of
  microseconds, and is stable across processes and machines (no salted ``hash``).
- ``DenseFeatures``: a numeric payload (an image, an embedding) flattened to ``dim`` floats, times ``scale``.

``features_from_dict`` rebuilds either from its ``to_dict()``; errors name the field (``student.features.dim``).
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tierswitch.errors import ConfigError
from tierswitch.validation import finite, positive

__all__ = ["DenseFeatures", "Featurizer", "HashedTextFeatures", "SparseRow", "densify", "features_from_dict"]

SparseRow = tuple[np.ndarray, np.ndarray]
"""(int64 column indices, float32 values) of one input."""

_TOKEN = re.compile(r"(?u)\b\w\w+\b")
_PRIME = np.uint64(1099511628211)  # FNV-1's 64-bit prime
_MIX = [np.uint64((0x9E3779B97F4A7C15 * (2 * n + 1)) % (1 << 64)) for n in range(9)]  # one odd multiplier per n
_SHIFT = np.uint64(24)  # keep the well-mixed high bits


@dataclass(frozen=True)
class HashedTextFeatures:
    """Hashed word + char n-grams of a text (see the module docstring)."""

    dim: int = 1 << 14
    words: int = 2
    chars: tuple[int, int] | None = (3, 4)

    def __post_init__(self) -> None:
        positive("student.features.dim", self.dim, integer=True)
        if self.dim < 2:
            raise ConfigError("student.features.dim", f"must be >= 2, got {self.dim}")
        if isinstance(self.words, bool) or not isinstance(self.words, int) or not 0 <= self.words <= 5:
            raise ConfigError("student.features.words", f"must be an integer in [0, 5], got {self.words!r}")
        if self.chars is not None:
            chars = tuple(self.chars)
            if (len(chars) != 2 or any(isinstance(c, bool) or not isinstance(c, int) for c in chars)
                    or not 1 <= chars[0] <= chars[1] <= 8):
                raise ConfigError("student.features.chars",
                                  f"must be [min_n, max_n] with 1 <= min_n <= max_n <= 8, or null; got {self.chars!r}")
            object.__setattr__(self, "chars", (int(chars[0]), int(chars[1])))
        if not self.words and self.chars is None:
            raise ConfigError("student.features", "needs word n-grams (words >= 1) or char n-grams (chars)")

    kind = "hashed_text"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "dim": self.dim, "words": self.words,
                "chars": None if self.chars is None else list(self.chars)}

    def _hashes(self, text: str) -> np.ndarray:
        parts: list[np.ndarray] = []
        lowered = text.lower()
        if self.words:
            tokens = _TOKEN.findall(lowered)
            grams = list(tokens)
            for n in range(2, min(self.words, len(tokens)) + 1):
                grams.extend([" ".join(tokens[i:i + n]) for i in range(len(tokens) - n + 1)])
            if grams:
                parts.append(np.array([zlib.crc32(g.encode("utf-8")) for g in grams], dtype=np.uint64))
        if self.chars is not None:
            b = np.frombuffer((" " + " ".join(lowered.split()) + " ").encode("utf-8"), dtype=np.uint8).astype(
                np.uint64)
            lo, hi = self.chars
            h = b
            for n in range(2, hi + 1):  # h[i]: a polynomial hash of the n bytes starting at i
                if n > len(b):
                    break
                h = h[:-1] * _PRIME + b[n - 1:]
                if n >= lo:
                    parts.append(h * _MIX[n])
            if lo == 1:
                parts.append(b * _MIX[1])
        return np.concatenate(parts) >> _SHIFT if parts else np.zeros(0, dtype=np.uint64)

    def sparse_one(self, x: Any) -> SparseRow:
        """One text's (columns, values): every n-gram occurrence is a column (repeats add up where the row is
        used: the numpy forward's gather-sum and ``densify``), each worth 1/sqrt(occurrences), so the row has unit
        l2 norm when no two n-grams share a column. An empty text gives an empty row."""
        if not isinstance(x, str):
            raise TypeError(f"hashed_text features take a str, got {type(x).__name__}")
        h = self._hashes(x)
        cols = (h & self._mask).astype(np.int64) if self._mask is not None else (h % np.uint64(self.dim)).astype(
            np.int64)
        return cols, np.full(len(cols), 1.0 / np.sqrt(max(len(cols), 1)), dtype=np.float32)

    @property
    def _mask(self) -> np.uint64 | None:
        return np.uint64(self.dim - 1) if self.dim & (self.dim - 1) == 0 else None


@dataclass(frozen=True)
class DenseFeatures:
    """A numeric payload flattened to ``dim`` float32 values, times ``scale``."""

    dim: int
    scale: float = 1.0

    kind = "dense"

    def __post_init__(self) -> None:
        positive("student.features.dim", self.dim, integer=True)
        finite("student.features.scale", self.scale, low=0.0, strict=True)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "dim": self.dim, "scale": self.scale}

    def sparse_one(self, x: Any) -> SparseRow:
        row = self.dense_one(x)
        cols = np.flatnonzero(row)
        return cols, row[cols]

    def dense_one(self, x: Any) -> np.ndarray:
        row = np.asarray(x, dtype=np.float32).reshape(-1)
        if row.shape != (self.dim,):
            raise ValueError(f"dense features expect {self.dim} values, got {row.size}")
        return row * np.float32(self.scale) if self.scale != 1.0 else row


Featurizer = HashedTextFeatures | DenseFeatures


def densify(rows: Sequence[SparseRow], dim: int) -> np.ndarray:
    """(n, dim) float32 array of sparse rows; repeated columns add up (as in the numpy forward's gather-sum)."""
    out = np.zeros((len(rows), dim), dtype=np.float32)
    for i, (cols, vals) in enumerate(rows):
        np.add.at(out[i], cols, vals)
    return out


def features_from_dict(d: Any) -> Featurizer:
    """The featuriser a ``to_dict()`` describes; errors name the field at fault."""
    if not isinstance(d, dict):
        raise ConfigError("student.features", f"must be a mapping with a 'kind', got {d!r:.100}")
    kind = d.get("kind")
    cls: type[HashedTextFeatures] | type[DenseFeatures]
    if kind == "hashed_text":
        cls = HashedTextFeatures
    elif kind == "dense":
        cls = DenseFeatures
    else:
        raise ConfigError("student.features.kind", f"must be 'hashed_text' or 'dense', got {kind!r}")
    known = {"kind", "dim", "words", "chars"} if kind == "hashed_text" else {"kind", "dim", "scale"}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ConfigError(f"student.features.{unknown[0]}", f"unknown setting; known: {sorted(known)}")
    args = {k: v for k, v in d.items() if k != "kind"}
    if kind == "dense" and "dim" not in args:
        raise ConfigError("student.features.dim", "is missing")
    if kind == "hashed_text" and isinstance(args.get("chars"), list):
        args["chars"] = tuple(args["chars"])
    return cls(**args)
