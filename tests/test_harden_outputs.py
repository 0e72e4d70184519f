"""Issue 14 items 6 and 7: one output rule (tierswitch.outputs) at the tier boundary and in the cache: NaN/inf
anywhere in an output is refused, probabilities must be probabilities, confidence must be in [0, 1]; and issue 15:
cache/base.py no longer imports tiers/base.py."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from tierswitch import CallableTier, Fixed, MemoryCache, Router
from tierswitch.cache.base import is_storable
from tierswitch.errors import NonFiniteOutput, TierFailure, TierswitchError
from tierswitch.tiers.base import RawOutput, make_prediction
from tierswitch.types import Prediction

NAN = float("nan")

NONFINITE_OUTPUTS = [
    [1.0, NAN],
    (0.5, float("inf")),
    {"label": "a", "scores": [0.1, NAN]},
    np.float32("nan"),
    np.float16("inf"),
    complex(1, NAN),
    [[[np.array([1.0, np.nan])]]],
    np.array([1.0, NAN], dtype=object),
]


@pytest.mark.parametrize("output", NONFINITE_OUTPUTS, ids=range(len(NONFINITE_OUTPUTS)))
def test_nonfinite_outputs_anywhere_are_refused_and_never_cached(output):
    with pytest.raises(NonFiniteOutput):
        make_prediction(RawOutput(output), "base", "1", 1.0, 0.0)
    assert not is_storable(Prediction(output, "base", "1", 1.0, 0.0))
    cache = MemoryCache()
    router = Router([CallableTier("base", lambda x: RawOutput(output), cost=1.0)], Fixed("base"), cache=cache)
    with pytest.raises(TierswitchError):
        router("hi")
    assert cache.stats.total("sets") == 0
    assert len(cache) == 0


@pytest.mark.parametrize("output", ["caf\udce9", ["ok", "caf\udce9"], {"caf\udce9": 1}])
def test_text_that_is_not_valid_unicode_is_refused_and_never_breaks_a_redis_cached_request(output, redis_url,
                                                                                           redis_prefix):
    from tierswitch.cache.redis import RedisCache

    with pytest.raises(TierFailure, match="not valid Unicode"):
        make_prediction(RawOutput(output), "base", "1", 1.0, 0.0)
    cache = RedisCache(redis_url, namespace=redis_prefix, ttl_s=60)
    try:
        router = Router([CallableTier("base", lambda x: output, cost=1.0),
                         CallableTier("full", lambda x: "full", cost=2.0)], Fixed("base"), cache=cache)
        assert router("q").tier == "full"  # before: a raw UnicodeEncodeError from the cache's codec failed it
    finally:
        cache.close()


def test_a_too_deep_output_is_a_tier_failure():
    deep: list = [1.0]
    for _ in range(40):
        deep = [deep]
    with pytest.raises(TierFailure, match="deeper"):
        make_prediction(RawOutput(deep), "base", "1", 1.0, 0.0)


@pytest.mark.parametrize("probs, confidence, phrase", [
    ([5.0, 5.0], None, "sum to 1"),
    ([1e300, 0.0], None, "sum to 1"),
    ([-0.2, 1.2], None, "in \\[0, 1\\]"),
    ([0.5, 0.2], None, "sum to 1"),
    ([0.33, 0.33, 0.33], None, "sum to 1"),  # off by 0.01: over the 0.001 the cache also applies
    ([[0.5, 0.5], [0.5, 0.2]], None, "sum to 1"),
    (None, 1e300, "outside"),
    (None, 5.0, "outside"),
    (None, -0.1, "outside"),
    (None, "0.9", "str"),
    (None, True, "bool"),
    (None, [0.9], "list"),
    ([0.9, 0.1], 2.0, "outside"),
])
def test_probabilities_and_confidence_must_be_in_range(probs, confidence, phrase):
    with pytest.raises(TierFailure, match=phrase):
        make_prediction(RawOutput("a", probs, confidence), "base", "1", 1.0, 0.0)


def test_out_of_range_confidence_escalates_instead_of_passing_the_cascade():
    from tierswitch import Cascade

    cache = MemoryCache()
    router = Router([CallableTier("base", lambda x: ("cheap", [5.0, 5.0]), cost=1.0),
                     CallableTier("full", lambda x: "full", cost=10.0)],
                    Cascade({"base": 0.9}), cache=cache)
    out = router("hi")
    assert out.tier == "full" and out.output == "full"


def test_valid_outputs_still_pass():
    softmax = np.exp(np.linspace(-3, 3, 5000, dtype=np.float32))
    softmax /= softmax.sum()
    for probs in ([0.3333, 0.3333, 0.3334], np.array([0.2, 0.8], dtype=np.float32), [1.0], [], softmax,
                  [[0.5, 0.5], [0.1, 0.9]]):
        pred = make_prediction(RawOutput("a", probs), "base", "1", 1.0, 0.0)
        assert pred.confidence is None or 0.0 <= pred.confidence <= 1.0
    pred = make_prediction(RawOutput([1.0, {"x": (2, "y")}], None, np.float32(0.5)), "base", "1", 1.0, 0.0)
    assert pred.confidence == 0.5
    assert make_prediction(RawOutput(np.float32(1.5)), "base", "1", 1.0, 0.0).output == np.float32(1.5)


def test_cache_base_does_not_import_tiers_and_old_names_still_import():
    import tierswitch.cache.base as cache_base
    from tierswitch.tiers.base import finite_extremes, nonfinite_output, same_output  # noqa: F401  (re-exports)

    tree = ast.parse(Path(cache_base.__file__).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not any(m and m.startswith("tierswitch.tiers") for m in imported)
    tree = ast.parse((Path(cache_base.__file__).parent.parent / "outputs.py").read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert {m for m in imported if m and m.startswith("tierswitch")} <= {"tierswitch.errors", "tierswitch.types"}
