"""Text features for the demo's tiers, in plain Python + numpy (fast for one request, no pickled vectorizers).

- ``word_tokens``, ``word_ngrams`` and ``char_wb_ngrams`` reproduce scikit-learn's default word analyzer and its
  ``char_wb`` analyzer exactly, so a ``TfidfSpace`` fitted by scikit-learn (its vocabulary and idf, saved as JSON and
  npz) transforms a request here to the same vector, without scikit-learn's per-call overhead.
- ``HashedText`` maps n-grams to a fixed width with a stable hash (crc32; Python's ``hash`` is salted per process):
  sparse for the base tier's linear model, dense float32 for the torch student's input.
"""

from __future__ import annotations

import math
import re
import zlib
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

__all__ = ["HashedText", "TfidfSpace", "char_wb_ngrams", "word_ngrams", "word_tokens"]

_TOKEN = re.compile(r"(?u)\b\w\w+\b")  # scikit-learn's default token_pattern
_SPACES = re.compile(r"\s\s+")


def word_tokens(text: str) -> list[str]:
    """Lower-cased word tokens of two or more word characters."""
    return _TOKEN.findall(text.lower())


def word_ngrams(tokens: Sequence[str], max_n: int) -> list[str]:
    """Unigrams, then space-joined n-grams up to ``max_n``."""
    out = list(tokens)
    for n in range(2, min(max_n, len(tokens)) + 1):
        out.extend(" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
    return out


def char_wb_ngrams(text: str, min_n: int, max_n: int) -> list[str]:
    """Character n-grams inside space-padded words (a word shorter than n counts once, whole)."""
    out: list[str] = []
    for word in _SPACES.sub(" ", text.lower()).split():
        w = f" {word} "
        size = len(w)
        for n in range(min_n, max_n + 1):
            if size <= n:
                out.append(w)
                break
            out.extend(w[i : i + n] for i in range(size - n + 1))
    return out


class TfidfSpace:
    """A fitted TF-IDF space: ``vocabulary`` (n-gram -> column), ``idf``, sublinear tf, l2 norm.

    ``analyzer`` is ``("word", max_n)`` or ``("char_wb", min_n, max_n)``.
    """

    def __init__(self, analyzer: Sequence[Any], vocabulary: Mapping[str, int], idf: np.ndarray) -> None:
        self.analyzer = tuple(analyzer)
        self.vocabulary = dict(vocabulary)
        self.idf = np.asarray(idf, dtype=np.float64)
        if self.analyzer[0] not in ("word", "char_wb"):
            raise ValueError(f"unknown analyzer {self.analyzer!r}")

    @property
    def width(self) -> int:
        return len(self.idf)

    def grams(self, text: str) -> list[str]:
        if self.analyzer[0] == "word":
            return word_ngrams(word_tokens(text), int(self.analyzer[1]))
        return char_wb_ngrams(text, int(self.analyzer[1]), int(self.analyzer[2]))

    def sparse_one(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """(column indices, values) of one text's l2-normalised tf-idf vector."""
        vocab = self.vocabulary
        counts = Counter(j for j in map(vocab.get, self.grams(text)) if j is not None)
        if not counts:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        cols = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
        tf = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
        vals = (1.0 + np.log(tf)) * self.idf[cols]
        return cols, vals / math.sqrt(float(vals @ vals))

    def transform(self, texts: Sequence[str]) -> sp.csr_matrix:
        """The (n, width) CSR matrix of many texts."""
        return _stack([self.sparse_one(t) for t in texts], self.width)


class HashedText:
    """Word n-grams (and optionally char_wb n-grams) hashed into ``dim`` columns; raw counts or sublinear tf,
    l2-normalised. ``words`` is the largest word n-gram; ``chars`` a (min_n, max_n) range or None."""

    def __init__(self, dim: int, *, words: int = 1, chars: tuple[int, int] | None = None, sublinear: bool = False):
        if dim < 2:
            raise ValueError(f"dim must be >= 2, got {dim}")
        self.dim = dim
        self.words = words
        self.chars = chars
        self.sublinear = sublinear

    def config(self) -> dict[str, Any]:
        return {"dim": self.dim, "words": self.words, "chars": self.chars, "sublinear": self.sublinear}

    def sparse_one(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        grams = word_ngrams(word_tokens(text), self.words) if self.words else []
        if self.chars is not None:
            grams += char_wb_ngrams(text, *self.chars)
        dim = self.dim
        counts = Counter(zlib.crc32(g.encode("utf-8")) % dim for g in grams)
        if not counts:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        cols = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
        vals = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
        if self.sublinear:
            vals = 1.0 + np.log(vals)
        return cols, vals / math.sqrt(float(vals @ vals))

    def transform(self, texts: Sequence[str]) -> sp.csr_matrix:
        return _stack([self.sparse_one(t) for t in texts], self.dim)

    def dense_one(self, text: str) -> np.ndarray:
        """One text as a dense float32 vector of length ``dim`` (the torch student's input)."""
        out = np.zeros(self.dim, dtype=np.float32)
        cols, vals = self.sparse_one(text)
        out[cols] = vals
        return out


def _stack(rows: Sequence[tuple[np.ndarray, np.ndarray]], width: int) -> sp.csr_matrix:
    indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum([len(c) for c, _ in rows], out=indptr[1:])
    cols = np.concatenate([c for c, _ in rows]) if rows else np.zeros(0, dtype=np.int64)
    vals = np.concatenate([v for _, v in rows]) if rows else np.zeros(0)
    return sp.csr_matrix((vals, cols, indptr), shape=(len(rows), width))
