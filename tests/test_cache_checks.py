"""The cache's value check is the tier boundary's rule (``tierswitch.outputs.check_output``): its fast accept path
never accepts what the rule refuses, and everything else gets the rule's own verdict."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tierswitch.cache.checks import _plainly_fine, problem
from tierswitch.errors import TierFailure
from tierswitch.outputs import check_output
from tierswitch.types import Prediction

edgy = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, 1.0, 0.5, 1.005, 0.995, 1.011, -1e-12, 1e308]),
)


@settings(max_examples=400, deadline=None)
@given(
    probs=st.one_of(st.none(), st.lists(edgy, min_size=0, max_size=6)),
    normalise=st.booleans(),
    confidence=st.one_of(st.none(), edgy),
)
def test_the_fast_path_accepts_only_what_the_rule_accepts(probs, normalise, confidence) -> None:  # type: ignore[no-untyped-def]
    arr = None
    if probs is not None:
        arr = np.asarray(probs, dtype=np.float64)
        if normalise and arr.size and np.isfinite(arr).all() and (arr > 0).all():
            with np.errstate(all="ignore"):
                arr = arr / arr.sum()
    p = Prediction("label", "t", "1", 1.0, 0.0, arr, confidence)
    try:
        check_output("t", p.output, p.probs, p.confidence)
        accepted = True
    except TierFailure:
        accepted = False
    if _plainly_fine(p):
        assert accepted, f"fast path accepted what the rule refuses: probs={arr!r} confidence={confidence!r}"
    assert (problem(p) is None) == accepted
