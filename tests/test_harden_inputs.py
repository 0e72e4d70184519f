"""Issue 14 items 4, 5 and 11 (input part): masked and oversized arrays are refused before any copy, huge ints are
digested, and ``validation.batch_inputs`` names what is wrong with a batch argument."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from tierswitch import CallableTier, Fixed, MemoryCache, Router
from tierswitch.digest import digest_of
from tierswitch.errors import EmptyInput, InputTooLarge, InvalidInput, UnsupportedInput


def _router() -> Router:
    return Router([CallableTier("base", lambda x: 1, cost=1.0), CallableTier("full", lambda x: 2, cost=2.0)],
                  Fixed("base"), cache=MemoryCache())


def test_masked_arrays_are_refused_so_the_mask_cannot_be_ignored():
    a = np.ma.array([1.0, 2.0], mask=[False, True])
    b = np.ma.array([1.0, 2.0], mask=[True, False])
    with pytest.raises(UnsupportedInput, match="masked"):
        digest_of(a)
    nan_under_mask = np.ma.array([1.0, np.nan], mask=[False, True])
    router = _router()
    for x in (a, b, nan_under_mask, {"tabular": a}):
        with pytest.raises(UnsupportedInput, match="filled"):
            router(x)
    assert router(np.array([1.0, 2.0])).output == 1  # and it keeps serving


def test_object_arrays_are_refused():
    router = _router()
    for x in (np.array([object()], dtype=object), np.array([1, "a"], dtype=object), [np.array([None])]):
        with pytest.raises(UnsupportedInput):
            router(x)


@pytest.mark.parametrize("make", [
    lambda: np.broadcast_to(np.zeros(1), (144_000_000,)),
    lambda: np.lib.stride_tricks.as_strided(np.zeros(1), shape=(144_000_000,), strides=(0,)),
    lambda: {"tabular": np.broadcast_to(np.float64(1.0), (12_000, 12_000))},
    lambda: np.broadcast_to(np.array([np.nan]), (144_000_000,)),  # NaN too: the size check comes first
])
def test_broadcast_views_are_refused_without_allocating(make):
    x = make()
    router = _router()
    tracemalloc.start()
    try:
        with pytest.raises(InputTooLarge, match="bytes"):
            router(x)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20_000_000  # the view is 1.15 GB; before the fix it was copied (and isfinite'd) first


def test_huge_ints_are_digested_not_a_raw_value_error():
    big = [10**5000]
    assert digest_of(big) == digest_of([10**5000]) != digest_of([10**5000 + 1])
    assert digest_of([5]) != digest_of([10**5000])
    assert _router()(big).output == 1


@pytest.mark.parametrize("xs, error, phrase", [
    (None, EmptyInput, "list of inputs"),
    (5, UnsupportedInput, "iterable"),
    ("text", UnsupportedInput, "each character"),
    (b"bytes", UnsupportedInput, "each character"),
    ({"messages": []}, UnsupportedInput, "mapping"),
    ({1, 2}, UnsupportedInput, "set"),
    (np.float64(3.0), UnsupportedInput, "iterable"),
    (list(range(11)), InputTooLarge, "max_batch=10"),
    ((i for i in range(10**9)), InputTooLarge, "max_batch=10"),
])
def test_batch_inputs_names_what_is_wrong(xs, error, phrase):
    from tierswitch.validation import batch_inputs

    with pytest.raises(error, match=phrase):
        batch_inputs(xs, 10)


def test_batch_inputs_takes_lists_tuples_arrays_and_generators():
    from tierswitch.validation import batch_inputs

    assert batch_inputs(["a", "b"], 10) == ["a", "b"]
    assert batch_inputs(("a",), 10) == ["a"]
    assert batch_inputs((x for x in "ab"), 10) == ["a", "b"]
    assert batch_inputs([], 10) == []
    rows = batch_inputs(np.zeros((3, 2)), 10)
    assert len(rows) == 3 and rows[0].shape == (2,)

    def broken():
        yield "a"
        raise RuntimeError("source closed")

    with pytest.raises(InvalidInput, match="source closed"):
        batch_inputs(broken(), 10)
