"""What a cache value must be to be stored, or served: the tier boundary's rule, for writes and reads.

A cached answer is served as if a tier had just given it, so it must pass the rule a tier's answer passes
(``tierswitch.outputs.check_output``: NaN/inf nowhere in the output, class probabilities in [0, 1] summing to 1
within ``PROB_SUM_TOLERANCE``, a confidence in [0, 1]), plus a finite cost. Writes refuse what fails (counted as
``rejected``); reads refuse it too (counted as ``corrupt``, warned, deleted), since a shared store may hold values
written by another process, an older version, or someone else. One rule: a value the router would refuse from a
model is never stored, nor served from a store, and nothing a tier may return is refused by the cache.

Reads run this on every hit, so the usual value (1-D float64 probabilities, a float confidence) is accepted by a
fast path that only accepts what the rule accepts (two numpy calls instead of a copy and four); anything it does
not accept goes to ``check_output``, which gives the verdict and the message.
"""

from __future__ import annotations

import math

import numpy as np

from tierswitch.errors import TierFailure
from tierswitch.outputs import PROB_SUM_TOLERANCE, check_output, output_problem
from tierswitch.types import Prediction

__all__ = ["problem"]

_SLACK = PROB_SUM_TOLERANCE  # the rule adds a rounding epsilon on top: borderline values go to the rule
_sum = np.add.reduce
_F8 = np.dtype(np.float64)


def problem(prediction: Prediction) -> str | None:
    """What makes ``prediction`` unfit to be cached or served from a cache, or None when nothing does."""
    if not math.isfinite(prediction.cost):
        return f"cost {prediction.cost!r} is not finite"
    if _plainly_fine(prediction):
        return None
    try:
        check_output(prediction.tier, prediction.output, prediction.probs, prediction.confidence)
    except TierFailure as exc:  # NonFiniteOutput included
        return str(exc)
    return None


def _plainly_fine(p: Prediction) -> bool:
    """True only for values ``check_output`` accepts: the largest element is at most 1 + slack (a NaN is found
    first by argmax and fails it), so the sum is finite exactly when every element is; then a sum within the slack
    of 1 and a smallest element >= 0 are the rule's own bounds."""
    confidence = p.confidence
    if confidence is not None and not (type(confidence) is float and 0.0 <= confidence <= 1.0):
        return False
    probs = p.probs
    if probs is not None:
        if probs.dtype != _F8 or probs.ndim != 1:
            return False
        if probs.size:
            if not probs[probs.argmax()] <= 1.0 + _SLACK:  # argmax finds a NaN first; no overflow in the sum below
                return False
            total = float(_sum(probs))
            if not (abs(total - 1.0) <= _SLACK and probs[probs.argmin()] >= 0.0):  # NaN fails both
                return False
    return output_problem(p.output) is None
