"""One rule for what a tier may hand back (ground floor: imports only ``errors``, ``types`` and numpy).

The tier boundary (``tiers.base.make_prediction``) and the cache (``cache.base.is_storable``) both use it, so a value
the router would refuse from a model is also never stored, nor served from a store.

- **Outputs**: NaN or inf anywhere is a ``NonFiniteOutput``: a float, a numpy scalar (``np.float32('nan')``), a
  complex number, a float/complex array, or any of these inside lists, tuples, dict values and object arrays,
  looked at to ``MAX_OUTPUT_DEPTH`` levels and ``MAX_OUTPUT_VALUES`` values (a deeper or larger container output is
  a ``TierFailure``: return a numpy array for bulk numbers).
- **Text** in an output (a str, or strs inside containers) must be valid Unicode: a lone surrogate (text decoded
  with ``errors='surrogateescape'``) can be neither cached (msgpack) nor sent (JSON); it is a ``TierFailure``.
- **Probabilities** (``probs``): a numeric array whose values are in [0, 1] and sum to 1 within
  ``PROB_SUM_TOLERANCE`` (0.001, absolute; per row for a 2-D array, one distribution per row), the same bound the
  cache applies to stored values. Anything else is refused, not normalised: logits or unnormalised scores
  (``[5, 5]``) would otherwise give a confidence above 1 that passes every cascade threshold. Apply a softmax in
  the tier, or pass ``confidence`` yourself.
- **Confidence**: a real number (not a bool, not a string) in [0, 1]; NaN/inf is a ``NonFiniteOutput``, anything
  else outside [0, 1] a ``TierFailure``. When absent it is the top class probability (capped at 1.0 against the
  tolerance above).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from tierswitch.errors import NonFiniteOutput, TierFailure

__all__ = ["MAX_OUTPUT_DEPTH", "MAX_OUTPUT_VALUES", "PROB_SUM_TOLERANCE", "check_confidence", "check_output",
           "check_probs", "finite_extremes", "nonfinite_output", "output_problem", "same_output"]

#: Probabilities must sum to 1 within this absolute tolerance: float32 softmax over thousands of classes stays
#: well inside it, logits do not (the cache's read/write checks use the same bound).
PROB_SUM_TOLERANCE = 1e-3
#: How deep and how many values of a list/tuple/dict output are checked; past either the output is refused.
MAX_OUTPUT_DEPTH = 32
MAX_OUTPUT_VALUES = 100_000

_SCALARS = (bytes, int, bool, type(None))


def finite_extremes(arr: np.ndarray) -> tuple[float, float] | None:
    """(max, min) of a non-empty float array, or None when it holds NaN or inf.

    argmax/argmin return the first NaN when there is one, so two cheap index lookups check finiteness and give
    the top value; a ufunc reduction (``np.isfinite(a).all()``) costs about 4x more on the small arrays of a
    classifier's output, and this runs on every tier call.
    """
    hi = float(arr[arr.argmax()])
    lo = float(arr[arr.argmin()])
    if math.isfinite(hi) and math.isfinite(lo):
        return hi, lo
    return None


def output_problem(output: Any) -> tuple[bool, str] | None:
    """``(nonfinite, what)`` when ``output`` is not one the router may serve, else None: ``nonfinite`` True for a
    NaN/inf found, False for a container past the depth/value bounds."""
    if isinstance(output, str):  # the common case (labels, text): one C-speed pass
        return _text_problem(output)
    if isinstance(output, _SCALARS):
        return None
    budget = [MAX_OUTPUT_VALUES]
    return _scan(output, 0, budget)


def _scan(x: Any, depth: int, budget: list[int]) -> tuple[bool, str] | None:
    budget[0] -= 1
    if budget[0] < 0:
        return False, f"output holds more than {MAX_OUTPUT_VALUES} values in lists/dicts; return a numpy array"
    if depth > MAX_OUTPUT_DEPTH:
        return False, f"output nests deeper than {MAX_OUTPUT_DEPTH} levels"
    if isinstance(x, str):
        return _text_problem(x)
    if isinstance(x, _SCALARS):
        return None
    if isinstance(x, (float, complex, np.floating, np.complexfloating)):
        if not np.isfinite(x):
            return True, f"output holds {x!s} ({type(x).__name__})"
        return None
    if isinstance(x, np.ndarray):
        if x.dtype.kind in "fc":
            if x.size and not np.isfinite(x).all():
                return True, "output array holds NaN or inf"
        elif x.dtype.kind == "O":
            for item in x.flat:
                found = _scan(item, depth + 1, budget)
                if found is not None:
                    return found
        return None
    if isinstance(x, Mapping):
        for key, value in x.items():
            found = _scan(key, depth + 1, budget) if isinstance(key, str) else None
            found = found or _scan(value, depth + 1, budget)
            if found is not None:
                return found
        return None
    if isinstance(x, (list, tuple)):
        for item in x:
            found = _scan(item, depth + 1, budget)
            if found is not None:
                return found
        return None
    return None  # other objects (a dataclass, a tensor already converted by the adapter...) are the tier's own


def _text_problem(text: str) -> tuple[bool, str] | None:
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return False, (f"output text is not valid Unicode (lone surrogate at index {exc.start}); decode the model's "
                       "bytes with errors='replace' or the right encoding")
    return None


def nonfinite_output(output: Any) -> str | None:
    """What is wrong with a tier's ``output`` (NaN/inf anywhere in it, or a container past the bounds), or None.
    The tier boundary refuses such an output and the cache never stores one."""
    found = output_problem(output)
    return None if found is None else found[1]


_add = np.add.reduce


def check_probs(tier: str, probs: Any) -> tuple[np.ndarray, float | None]:
    """``probs`` as a read-only float64 array and its top value (None when empty), or the error naming ``tier``."""
    try:
        arr = np.array(probs, dtype=np.float64)
    except (TypeError, ValueError, OverflowError) as exc:
        raise TierFailure(tier, f"class probabilities are not an array of numbers ({exc}); return a 1-D numeric "
                                "array as probs, or a bare output") from exc
    top = None
    if arr.ndim == 1 and arr.size:  # the usual case, on every tier call: no errstate, no temporaries
        hi, lo = float(arr[arr.argmax()]), float(arr[arr.argmin()])
        if not (math.isfinite(hi) and math.isfinite(lo)):
            raise NonFiniteOutput(tier, "class probabilities hold NaN or inf")
        slack = PROB_SUM_TOLERANCE + 1e-12
        # within [0, 1 + slack] the sum cannot overflow, so it is taken only then
        worst = abs(float(_add(arr)) - 1.0) if 0.0 <= lo and hi <= 1.0 + slack else math.inf
        if not worst <= slack:
            raise TierFailure(tier, f"class probabilities must be in [0, 1] and sum to 1 (within "
                                    f"{PROB_SUM_TOLERANCE}); got min {lo:.4g}, max {hi:.4g}. Apply a softmax to "
                                    "logits or scores, or pass confidence= instead")
        arr.setflags(write=False)
        return arr, min(hi, 1.0)
    if arr.size:
        extremes = finite_extremes(arr.ravel())
        if extremes is None:
            raise NonFiniteOutput(tier, "class probabilities hold NaN or inf")
        hi, lo = extremes
        with np.errstate(over="ignore"):  # 1e308 + 1e308 is inf: refused below, no warning needed
            sums = arr.sum(axis=-1) if arr.ndim > 1 else arr.sum()  # one distribution per row for 2-D
        worst = float(np.max(np.abs(sums - 1.0)))
        slack = PROB_SUM_TOLERANCE + 1e-12
        if lo < 0.0 or hi > 1.0 + slack or not worst <= slack:
            raise TierFailure(tier, f"class probabilities must be in [0, 1] and sum to 1 (within "
                                    f"{PROB_SUM_TOLERANCE}); got min {lo:.4g}, max {hi:.4g}, sum off by "
                                    f"{worst:.4g}. Apply a softmax to logits or scores, or pass confidence= instead")
        top = min(hi, 1.0)
    arr.setflags(write=False)
    return arr, top


def check_confidence(tier: str, confidence: Any) -> float:
    """``confidence`` as a float in [0, 1], or the error naming ``tier``."""
    if isinstance(confidence, (bool, str, bytes)) or not isinstance(confidence, (int, float, np.integer,
                                                                                 np.floating)):
        raise TierFailure(tier, f"confidence must be a number in [0, 1], got a {type(confidence).__name__}")
    try:
        value = float(confidence)
    except OverflowError as exc:  # a huge int
        raise TierFailure(tier, "confidence must be a number in [0, 1], got a huge int") from exc
    if not math.isfinite(value):
        raise NonFiniteOutput(tier, f"confidence is {value}")
    if not 0.0 <= value <= 1.0:
        raise TierFailure(tier, f"confidence {value:.4g} is outside [0, 1]; return a probability (apply a "
                                "sigmoid/softmax to scores), not a logit or score")
    return value


def check_output(tier: str, output: Any, probs: Any = None,
                 confidence: Any = None) -> tuple[np.ndarray | None, float | None]:
    """Check one raw answer by the rule in this module's docstring; return the (read-only) probabilities and the
    confidence (the top probability when not given). Raises ``NonFiniteOutput`` / ``TierFailure`` naming ``tier``."""
    arr = None
    if probs is not None:
        arr, top = check_probs(tier, probs)
        if confidence is None:
            confidence = top  # already a float in [0, 1]: check_probs bounded it
        else:
            confidence = check_confidence(tier, confidence)
    elif confidence is not None:
        confidence = check_confidence(tier, confidence)
    found = output_problem(output)
    if found is not None:
        nonfinite, what = found
        if nonfinite:
            raise NonFiniteOutput(tier, what)
        raise TierFailure(tier, what)
    return arr, confidence


def same_output(a: Any, b: Any) -> bool:
    """Whether two tiers gave the same answer: arrays must match in shape and every element, anything else ``==``."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return bool(np.array_equal(np.asarray(a), np.asarray(b)))
    try:
        return bool(a == b)
    except (TypeError, ValueError):  # containers holding arrays: == is ambiguous
        return False
