"""Tier adapters: the tier contract for callables (single and batched) and scikit-learn classifiers."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from tests.contracts.tier_contract import TierContract

from tierswitch.errors import ConfigError, TierFailure
from tierswitch.tiers import CallableTier, Capabilities, CostModel, RawOutput, SklearnTier


def _boom(x):
    raise RuntimeError("model crashed")


class TestCallableSingle(TierContract):
    def make_tier(self, cost):
        return CallableTier("t", lambda x: (x.upper(), np.array([0.7, 0.3])), cost=cost)

    def inputs(self):
        return ["a", "bb", "ccc"]

    def make_failing_tier(self):
        return CallableTier("t", _boom)

    def make_nan_tier(self):
        return CallableTier("t", lambda x: float("nan"))


class TestCallableBatched(TierContract):
    def make_tier(self, cost):
        return CallableTier("t", lambda xs: [RawOutput(len(x), None, 0.9) for x in xs], batched=True, cost=cost)

    def inputs(self):
        return ["a", "bb", "ccc"]

    def make_failing_tier(self):
        return CallableTier("t", _boom, batched=True)

    def make_nan_tier(self):
        return CallableTier("t", lambda xs: [(1, np.array([np.nan, 1.0])) for _ in xs], batched=True)


@pytest.fixture(scope="module")
def digits_model():
    X, y = load_digits(return_X_y=True)
    return LogisticRegression(max_iter=500).fit(X[:500] / 16, y[:500]), X[500:505] / 16


class TestSklearn(TierContract):
    @pytest.fixture(autouse=True)
    def _model(self, digits_model):
        self.model, self.xs = digits_model

    def make_tier(self, cost):
        return SklearnTier("sk", self.model, cost=cost)

    def inputs(self):
        return list(self.xs)

    def make_failing_tier(self):
        return SklearnTier("sk", self.model, preprocess=lambda b: np.zeros((len(b), 3)))  # wrong feature count

    def make_nan_tier(self):
        return SklearnTier("sk", _NanModel())


class _NanModel:
    classes_ = np.array([0, 1])

    def predict_proba(self, X):
        return np.full((len(X), 2), np.nan)


def test_sklearn_tier_confidence_is_the_top_probability(digits_model):
    model, xs = digits_model
    prediction = SklearnTier("sk", model).predict_one(xs[0])
    assert prediction.output == model.predict(xs[:1])[0]
    assert prediction.confidence == pytest.approx(float(model.predict_proba(xs[:1]).max()))
    assert not prediction.probs.flags.writeable


def test_cost_model_prices_per_call_and_per_unit():
    assert CostModel(per_call=1.0, per_unit=0.25).cost(8) == pytest.approx(3.0)
    with pytest.raises(ConfigError) as info:
        CostModel(per_call=-1.0)
    assert info.value.field == "cost.per_call"


def test_capabilities_filter_by_modality_and_length():
    caps = Capabilities.of(["text"], max_length=512)
    assert caps.accepts("text", 512) and not caps.accepts("text", 513) and not caps.accepts("image", 1)
    assert Capabilities().accepts("image", 10**9)
    with pytest.raises(ConfigError):
        Capabilities.of(["audio"])


def test_tier_names_are_validated():
    with pytest.raises(ConfigError):
        CallableTier("a:b", lambda x: x)


def test_wrong_number_of_outputs_is_a_tier_failure():
    tier = CallableTier("t", lambda xs: [1], batched=True)
    with pytest.raises(TierFailure, match="returned 1 outputs for a batch of 3"):
        tier.predict(["a", "b", "c"])


@pytest.mark.parametrize("result", [("label", "extra"), ("label", [[0.5], [0.2, 0.3]]),
                                    {"output": "label", "confidence": "high"}])
def test_probs_or_confidence_that_are_not_numbers_are_a_tier_failure_the_router_falls_back_from(result):
    # a 2-tuple reads as (output, probs): a model returning ("label", "extra") must fail as a tier, not as a
    # bare ValueError out of the router
    from tierswitch import Fixed, Router

    odd = CallableTier("odd", lambda x: result)
    with pytest.raises(TierFailure, match="'odd' failed"):
        odd.predict_one("x")
    router = Router([odd, CallableTier("full", lambda x: "from full")], Fixed("odd"))
    out = router("x")
    assert (out.output, out.tier) == ("from full", "full")
    assert [s.kind for s in out.trace][2:4] == ["failure", "fallback"]


def test_bad_tier_arguments_are_config_errors_naming_the_field():
    for build, field in [(lambda: CallableTier("t", "not a function"), "tier.fn"),
                         (lambda: CallableTier("t", str.upper, cost="cheap"), "cost.per_call"),
                         (lambda: SklearnTier("t", object()), "tier.model")]:
        with pytest.raises(ConfigError) as info:
            build()
        assert info.value.field == field


def test_a_tierswitch_error_inside_a_tier_fails_that_tier_and_the_router_falls_back():
    # a tier that is itself a router (or any code using tierswitch) may raise AllTiersFailed, NoCapableTier ...:
    # that is this tier failing, not the caller's input being invalid, so the outer router falls back
    from tierswitch import Fixed, Router

    inner = Router([CallableTier("gpu", _boom)], Fixed("gpu"), cache=None)
    for batched in (False, True):
        nested = CallableTier("nested", (lambda xs: [inner(x).output for x in xs]) if batched else
                              (lambda x: inner(x).output), batched=batched)
        with pytest.raises(TierFailure, match="'nested' failed: AllTiersFailed"):
            nested.predict_one("x")
        outer = Router([nested, CallableTier("full", lambda x: "from full")], Fixed("nested"), cache=None)
        assert outer("x").output == "from full"
