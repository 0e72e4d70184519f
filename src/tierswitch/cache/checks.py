"""What a cache value must be to be stored, or served: one rule for writes and reads.

A cached answer is served as if a tier had just given it, so it must pass the checks a tier's answer passes:
finite numbers everywhere, a confidence in [0, 1], class probabilities that are finite, non-negative and sum to 1
(within ``PROBS_TOLERANCE``), and an output the output rule accepts. Writes refuse what fails (counted as
``rejected``); reads refuse it too (counted as ``corrupt``, warned, deleted), since a shared store may hold values
written by another process, an older version, or someone else.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from tierswitch.outputs import nonfinite_output as _output_rule  # the one output rule (ground floor)
from tierswitch.types import Prediction

__all__ = ["PROBS_TOLERANCE", "check_output", "problem"]

PROBS_TOLERANCE = 1e-3
"""|sum(probs) - 1| allowed: float32 softmax over thousands of classes stays well inside it; logits do not."""


def check_output(output: Any) -> str | None:
    """What is wrong with ``output`` as a cached answer (NaN/inf where a number is), or None."""
    return _output_rule(output)


def problem(prediction: Prediction) -> str | None:
    """What makes ``prediction`` unfit to be cached or served from a cache, or None when nothing does."""
    confidence = prediction.confidence
    if confidence is not None and (
        isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not 0.0 <= confidence <= 1.0
    ):
        return f"confidence {confidence!r} is not a number in [0, 1]"
    if not math.isfinite(prediction.cost):
        return f"cost {prediction.cost!r} is not finite"
    probs = prediction.probs
    if probs is not None and probs.size:
        why = probs_problem(probs)
        if why is not None:
            return why
    return check_output(prediction.output)


_sum = np.add.reduce


def probs_problem(probs: np.ndarray) -> str | None:
    """What is wrong with class probabilities (NaN/inf, negative, not summing to 1), or None.

    The usual 1-D float vector costs two reductions: a finite sum means every element is finite (inf + x is inf,
    inf - inf and NaN + x are NaN), and elements >= 0 that sum to 1 are each <= 1.
    """
    if probs.ndim == 1 and probs.dtype.kind == "f":
        total = float(_sum(probs))
        if not math.isfinite(total):
            return "class probabilities hold NaN or inf"
        lo = float(probs[probs.argmin()])  # argmin + index: a third of a ufunc reduction's cost on small arrays
        if lo < 0.0:
            return f"class probabilities hold a negative value ({lo:.3g})"
        if abs(total - 1.0) > PROBS_TOLERANCE:
            return f"class probabilities sum to {total:.6g}, not 1"
        return None
    if probs.dtype.kind not in "fiu":
        return f"class probabilities have dtype {probs.dtype}, expected a real number type"
    sums = np.ravel(probs.sum(axis=-1))  # one distribution per row for 2-D probabilities
    if not np.isfinite(sums).all():
        return "class probabilities hold NaN or inf"
    lo = float(probs.min())
    if lo < 0.0:
        return f"class probabilities hold a negative value ({lo:.3g})"
    off = np.abs(sums - 1.0)
    worst = int(off.argmax())
    if off[worst] > PROBS_TOLERANCE:
        return f"class probabilities sum to {float(sums[worst]):.6g}, not 1"
    return None
