"""The ``LearnedEstimator``'s featuriser: turns one input into dense counts and hashed n-grams.

Features of a text (or the ``text`` part of a dict input): a few dense counts that track how many reasoning steps a
request needs (length, numbers, number words, sentences, decimals, fractions, percents, capitalised names,
comparisons, connectives ...) plus word unigrams and bigrams (numbers reduced to their shape), hashed with a stable
32-bit hash. Numeric fields of a dict input are read with ``numeric_value``. Plain Python (no numpy) so the
serving hot path stays cheap; fitting and scoring both go through ``analyse`` so they see identical features.
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Mapping
from typing import Any

__all__ = ["DENSE_FEATURES", "analyse", "bucket", "numeric_value", "text_of"]

_TOKEN = re.compile(r"\d+(?:[.,/]\d+)*|[a-z]+(?:'[a-z]+)?|[^\sa-z\d]")
_CAPITALISED = re.compile(r"\b[A-Z][a-z]")
_NUMBER_WORDS = frozenset(
    "one two three four five six seven eight nine ten eleven twelve fifteen twenty thirty forty fifty hundred "
    "thousand million dozen half halves third thirds quarter quarters twice double triple thrice".split()
)
# word groups counted as dense features: (name, words)
_GROUPS: tuple[tuple[str, frozenset[str]], ...] = tuple(
    (name, frozenset(words.split()))
    for name, words in (
        ("time_units", "hour hours minute minutes second seconds day days week weeks month months year years"),
        ("comparisons", "more less fewer than times twice half"),
        ("rates", "each every per"),
        ("remainders", "remaining rest left"),
        ("ands", "and"),
        ("conditionals", "if"),
    )
)
DENSE_FEATURES: tuple[str, ...] = (
    "log_chars", "log_words", "log_numbers", "log_number_words", "log_all_numbers", "sentences", "decimals",
    "percents", "fractions", "dollars", "max_digits", "mean_word_length", "log_capitalised", "commas", "questions",
    "unique_word_ratio", "has_decimal", "has_percent", "has_fraction", "has_dollar",
) + tuple(name for name, _ in _GROUPS)
# token -> indices of the counters it bumps: . ? ! , % $ percent number-word, then one per word group
_COUNTS: dict[str, tuple[int, ...]] = {p: (i,) for i, p in enumerate(".?!,%$")}
for _word, _slot in [("percent", 6)] + [(w, 7) for w in _NUMBER_WORDS] + [
    (w, 8 + j) for j, (_, group) in enumerate(_GROUPS) for w in group
]:
    _COUNTS[_word] = _COUNTS.get(_word, ()) + (_slot,)


def text_of(x: Any) -> str:
    """The text an input carries: a str, a conversation's turns joined, or a dict's ``text`` part ("" if none)."""
    if isinstance(x, str):
        return x
    if isinstance(x, Mapping):
        return text_of(x["text"]) if "text" in x else ""
    if isinstance(x, list) and x and all(isinstance(t, Mapping) and "content" in t for t in x):
        return "\n".join(str(t["content"]) for t in x)
    return ""


def analyse(text: str) -> tuple[list[float], set[str]]:
    """Dense features and the set of word unigrams and bigrams (numbers reduced to their shape) in one pass."""
    tokens = _TOKEN.findall(text.lower())
    counts = [0] * (8 + len(_GROUPS))
    words: list[str] = []
    shaped: list[str] = []
    numbers = decimals = fractions = max_digits = 0
    lookup = _COUNTS.get
    for t in tokens:
        if t[0].isdigit():  # numbers become their shape, so "16 eggs" and "12 eggs" share n-grams
            numbers += 1
            max_digits = max(max_digits, len(t))
            if "." in t:
                decimals += 1
                shaped.append("0.0")
            elif "/" in t:
                fractions += 1
                shaped.append("0/0")
            else:
                shaped.append("0")
            continue
        shaped.append(t)
        slots = lookup(t)
        if slots is not None:
            for i in slots:
                counts[i] += 1
        if t[0].isalpha():
            words.append(t)
    n_words, number_words, percents = len(words), counts[7], counts[4] + counts[6]
    dense = [
        math.log1p(len(text)), math.log1p(n_words), math.log1p(numbers), math.log1p(number_words),
        math.log1p(numbers + number_words), float(counts[0] + counts[1] + counts[2]), float(decimals),
        float(percents), float(fractions), float(counts[5]), float(max_digits),
        sum(map(len, words)) / n_words if n_words else 0.0, math.log1p(len(_CAPITALISED.findall(text))),
        float(counts[3]), float(counts[1]), len(set(words)) / n_words if n_words else 0.0,
        float(decimals > 0), float(percents > 0), float(fractions > 0), float(counts[5] > 0),
    ]
    dense.extend(map(float, counts[8:]))
    grams = set(shaped)
    grams.update(map(" ".join, zip(shaped, shaped[1:])))
    return dense, grams


def bucket(gram: str) -> int:
    """The stable hash bucket of one n-gram."""
    # crc32 is stable across processes and machines (Python's hash() is salted per process); 32 bits keep
    # collisions negligible for the tens of thousands of n-grams a training set holds
    return zlib.crc32(gram.encode("utf-8", "surrogatepass"))


def numeric_value(x: Any, name: str) -> float:
    """The numeric field ``name`` of a dict input as a dense feature (0.0 when missing or not a finite number)."""
    value = x.get(name) if isinstance(x, Mapping) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return 0.0  # missing or non-finite: the column's neutral value
    return float(value)
