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
