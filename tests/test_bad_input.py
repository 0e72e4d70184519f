"""The bad-input matrix: each case raises its own TierswitchError subclass with a message saying what to do, nothing
is cached or handed to hooks (so nothing reaches distillation), and the same router serves the next request."""

from __future__ import annotations

import numpy as np
import pytest

from tierswitch import CallableTier, Capabilities, Fixed, MemoryCache, Router
from tierswitch.distill.buffer import MemoryBuffer
from tierswitch.distill.feed import DistillFeeder
from tierswitch.errors import (
    ConfigError,
    EmptyInput,
    InputTooLarge,
    NoCapableTier,
    NonFiniteInput,
    TierswitchError,
    UnsupportedInput,
)
from tierswitch.reliability import fallback_from_config

MB = 1_000_000


class Unhashable:
    __hash__ = None  # type: ignore[assignment]


DEEP: list = ["deep"]
for _ in range(40):
    DEEP = [DEEP]

BAD_INPUTS = [
    # (id, input, modality, error, a phrase of the "what to do" part)
    ("none", None, None, EmptyInput, "pass a str"),
    ("empty str", "", None, EmptyInput, "at least one character"),
    ("empty list", [], None, EmptyInput, "at least one"),
    ("empty dict", {}, None, EmptyInput, "at least one"),
    ("empty array", np.zeros((0,)), None, EmptyInput, "at least one"),
    ("10 MB str", "x" * (10 * MB), None, InputTooLarge, "max"),
    ("10 MB conversation", [{"role": "user", "content": "x" * (10 * MB)}], None, InputTooLarge,
     "raise max_input_bytes"),
    ("10 MB array", np.zeros(10 * MB // 8), None, InputTooLarge, "split it"),
    ("non-utf8 bytes", b"\xff\xfe\x00bad", None, UnsupportedInput, "decode it"),
    ("lone surrogate str", b"caf\xe9".decode("utf-8", "surrogateescape"), None, UnsupportedInput, "errors='replace'"),
    ("set", {1, 2}, None, UnsupportedInput, "pass a str"),
    ("unhashable object", Unhashable(), None, UnsupportedInput, "pass a str"),
    ("object array", np.array([object()]), None, UnsupportedInput, "numeric dtype"),
    ("nan array", np.array([1.0, np.nan]), None, NonFiniteInput, "clean it"),
    ("inf array", np.array([[1.0, np.inf]] * 4), None, NonFiniteInput, "clean it"),
    ("nan list", [0.5, float("nan")], None, NonFiniteInput, "replace NaN/inf"),
    ("nan in multimodal", {"text": "hi", "tabular": np.array([np.inf])}, None, NonFiniteInput, "clean it"),
    ("unknown modality", "hello", "audio", UnsupportedInput, "allowed"),
    ("turn without content", [{"role": "user"}], None, UnsupportedInput, "under 'content'"),
    ("turn content None", [{"role": "user", "content": None}], None, UnsupportedInput, "must be a str"),
    ("turn content dict", [{"content": {"text": "hi"}}], None, UnsupportedInput, "must be a str"),
    ("turn not a dict", [{"content": "hi"}, "and this"], None, UnsupportedInput, "every turn must be a dict"),
    ("turn role int", [{"role": 3, "content": "hi"}], None, UnsupportedInput, "use a str"),
    ("turns nested deep", [{"content": "hi", "x": DEEP}], None, UnsupportedInput, "flatten it"),
    ("dict with int keys", {"text": "hi", 7: "x"}, None, UnsupportedInput, "must be strings"),
    ("image for text-only tiers", np.zeros((8, 8)), None, NoCapableTier, "add a tier that does"),
    ("text over every max_length", "word " * 5000, None, NoCapableTier, "raise a max_length"),
]


@pytest.fixture()
def served():
    calls: list[object] = []

    def full(x):
        calls.append(x)
        return ("positive", np.array([0.2, 0.8]))

    router = Router(
        [CallableTier("base", full, capabilities=Capabilities.of(["text", "tabular", "multimodal"], 4096)),
         CallableTier("full", full, capabilities=Capabilities.of(["text", "tabular", "multimodal"], 4096))],
        Fixed("full"), cache=MemoryCache(), max_input_bytes=MB,
    )
    records: list[object] = []
    router.add_hook(records.append)
    feeder = DistillFeeder(MemoryBuffer(100)).attach(router)
    yield router, calls, records, feeder
    feeder.stop()


def assert_still_serving(router, calls, records, feeder, expected_requests: int) -> None:
    routed = router("a normal request after the bad one")
    assert routed.output == "positive" and routed.tier == "full" and not routed.cached
    assert len(records) == expected_requests and feeder.counters["queued"] == expected_requests
    assert len(router.cache) == expected_requests and router.cache.stats.total("sets") == expected_requests


@pytest.mark.parametrize("case", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_each_bad_input_gets_its_named_error_and_the_router_keeps_serving(served, case):
    router, calls, records, feeder = served
    _, x, modality, error, remedy = case
    with pytest.raises(error, match=remedy) as info:
        router(x, modality=modality)
    assert isinstance(info.value, TierswitchError)
    assert calls == [] and records == [] and len(router.cache) == 0 and feeder.counters["queued"] == 0
    with pytest.raises(error, match=r"^batch input \d: "):  # the batch path names the same error, and the input
        router.batch(["fine", x], modality=modality)
    assert calls == [] and len(router.cache) == 0
    assert_still_serving(router, calls, records, feeder, 1)


def test_every_bad_input_in_a_row_then_serving_is_unharmed(served):
    router, calls, records, feeder = served
    for _, x, modality, error, _ in BAD_INPUTS:
        with pytest.raises(error):
            router(x, modality=modality)
    assert_still_serving(router, calls, records, feeder, 1)
    assert router.stats.snapshot()["served"] == {"full": 1}


def test_a_batch_of_100_000_is_refused_before_any_work(served):
    router, calls, records, feeder = served
    with pytest.raises(InputTooLarge, match="split it"):
        router.batch(["same text"] * 100_000)
    assert calls == [] and len(router.cache) == 0
    assert_still_serving(router, calls, records, feeder, 1)


def tiers():
    return {"base": (lambda x: "b"), "full": (lambda x: "f")}


FIXED = {"kind": "fixed", "tier": "base"}
BAD_CONFIGS = [
    # (id, config, field at fault)
    ("policy not a mapping", {"policy": "cascade"}, "policy"),
    ("policy missing", {"tiers": {"base": {}, "full": {}}}, "policy"),
    ("negative cost", {"policy": FIXED, "tiers": {"base": {"cost": -1}, "full": {}}}, "tiers.base.cost"),
    ("negative per-unit cost", {"policy": FIXED, "tiers": {"base": {"cost": {"per_unit": -0.1}}, "full": {}}},
     "tiers.base.cost.per_unit"),
    ("cost a string", {"policy": FIXED, "tiers": {"base": {"cost": "cheap"}, "full": {}}}, "tiers.base.cost"),
    ("cost a bool", {"policy": FIXED, "tiers": {"base": {"cost": True}, "full": {}}}, "tiers.base.cost"),
    ("cost NaN", {"policy": FIXED, "tiers": {"base": {"cost": float("nan")}, "full": {}}}, "tiers.base.cost"),
    ("cost inf", {"policy": FIXED, "tiers": {"base": {"cost": float("inf")}, "full": {}}}, "tiers.base.cost"),
    ("tier declared but not given", {"policy": FIXED, "tiers": {"base": {}, "full": {}, "gpt5": {}}}, "tiers.gpt5"),
    ("policy names unknown tier", {"policy": {"kind": "fixed", "tier": "gpt5"}}, "policy"),
    ("cascade names unknown tier", {"policy": {"kind": "cascade", "thresholds": {"gpt5": 0.5}}}, "policy"),
    ("threshold a string", {"policy": {"kind": "cascade", "thresholds": {"base": "high"}}}, "policy.thresholds.base"),
    ("modalities a string", {"policy": FIXED, "tiers": {"base": {"modalities": "text"}, "full": {}}},
     "tiers.base.modalities"),
    ("unknown modality", {"policy": FIXED, "tiers": {"base": {"modalities": ["audio"]}, "full": {}}},
     "tiers.base.modalities"),
    ("negative max_length", {"policy": FIXED, "tiers": {"base": {"max_length": -3}, "full": {}}},
     "tiers.base.max_length"),
    ("version a list", {"policy": FIXED, "tiers": {"base": {"version": [1]}, "full": {}}}, "tiers.base.version"),
    ("batched a string", {"policy": FIXED, "tiers": {"base": {"batched": "no"}, "full": {}}}, "tiers.base.batched"),
    ("cache negative size", {"policy": FIXED, "cache": {"kind": "memory", "max_entries": -1}}, "cache.max_entries"),
    ("cache ttl a string", {"policy": FIXED, "cache": {"kind": "memory", "ttl_s": "1h"}}, "cache.ttl_s"),
    ("cache size a bool", {"policy": FIXED, "cache": {"kind": "memory", "max_entries": True}}, "cache.max_entries"),
    ("modality prior a string", {"policy": FIXED, "estimator": {"kind": "complexity", "modality_prior": {"image": ""}}},
     "estimator.modality_prior.image"),
    ("estimator wrong type", {"policy": FIXED, "estimator": {"kind": "complexity", "length_scale": "long"}},
     "estimator.length_scale"),
    ("probe unknown tier", {"policy": FIXED, "estimator": {"kind": "complexity", "probe": "gpt5"}}, "estimator.probe"),
    ("max_batch a string", {"policy": FIXED, "router": {"max_batch": "big"}}, "router.max_batch"),
    ("max_batch negative", {"policy": FIXED, "router": {"max_batch": -1}}, "router.max_batch"),
    ("max_input_bytes negative", {"policy": FIXED, "router": {"max_input_bytes": -5}}, "router.max_input_bytes"),
    ("fallback a string", {"policy": FIXED, "router": {"fallback": "yes"}}, "router.fallback"),
    ("fallback cycle", {"policy": FIXED, "router": {"fallback": {"base": ["full"], "full": ["base"]}}},
     "router.fallback.base"),
]


@pytest.mark.parametrize("case", BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS])
def test_bad_configs_raise_config_error_naming_the_field(case):
    _, config, field = case
    with pytest.raises(ConfigError) as info:
        Router.from_config(config, tiers())
    assert info.value.field == field
    assert Router.from_config({"policy": FIXED}, tiers())("still fine").output == "b"


def test_fallback_cycles_are_refused_by_the_reliability_config():
    with pytest.raises(ConfigError, match="cycle base -> full -> base") as info:
        fallback_from_config({"base": ["full"], "full": ["base"]}, ["base", "full"])
    assert info.value.field == "router.fallback.base"
