"""Fixed, Threshold, Cascade and composition: the policy contract plus each policy's own rules."""

from __future__ import annotations

import pytest
from tests.contracts.policy_contract import PolicyContract, make_context

from tierswitch.errors import ConfigError
from tierswitch.policies import Cascade, FirstOf, Fixed, Threshold
from tierswitch.types import Prediction


class TestFixedContract(PolicyContract):
    make_policy = staticmethod(lambda: Fixed("distilled"))


class TestThresholdContract(PolicyContract):
    make_policy = staticmethod(lambda: Threshold(["base", "distilled", "full"], [0.3, 0.7]))


class TestCascadeContract(PolicyContract):
    make_policy = staticmethod(lambda: Cascade({"base": 0.8, "distilled": 0.7}))


class TestComposedContract(PolicyContract):
    make_policy = staticmethod(lambda: Fixed("base") | Threshold(["distilled", "full"], [0.5]))


def test_threshold_bands() -> None:
    policy = Threshold(["base", "distilled", "full"], [0.3, 0.7])
    assert [policy.decide(make_context(s)).tier for s in (0.0, 0.29, 0.3, 0.69, 0.7, 1.0)] == [
        "base", "base", "distilled", "distilled", "full", "full"]


def test_threshold_never_goes_cheaper_than_its_band() -> None:
    policy = Threshold(["base", "distilled", "full"], [0.3, 0.7])
    assert policy.decide(make_context(0.5, ("base", "full"))).tier == "full"
    assert policy.decide(make_context(0.9, ("base", "distilled"))).tier is None


@pytest.mark.parametrize(
    "tiers, cuts, field",
    [(["a"], [], "policy.tiers"), (["a", "b"], [0.1, 0.2], "policy.cuts"), (["a", "b", "c"], [0.5, 0.2], "policy.cuts"),
     (["a", "a"], [0.5], "policy.tiers"), (["a", "b"], [float("nan")], "policy.cuts")],
)
def test_threshold_rejects_bad_settings(tiers, cuts, field) -> None:
    with pytest.raises(ConfigError) as info:
        Threshold(tiers, cuts)
    assert info.value.field == field


def test_cascade_starts_cheapest_capable_and_accepts_by_confidence() -> None:
    policy = Cascade({"base": 0.8, "distilled": 0.7})
    ctx = make_context(0.5, ("distilled", "full"))
    assert policy.decide(ctx).tier == "distilled"
    assert policy.accept(ctx, Prediction("y", "distilled", "1", 1.0, 0.0, None, 0.75))
    assert not policy.accept(ctx, Prediction("y", "distilled", "1", 1.0, 0.0, None, 0.65))
    assert not policy.accept(ctx, Prediction("y", "base", "1", 1.0, 0.0, None, None))
    assert policy.accept(ctx, Prediction("y", "full", "1", 1.0, 0.0, None, None))


def test_cascade_trust_tightens_for_a_student_that_disagrees() -> None:
    policy = Cascade({"distilled": 0.7}, trust=0.5, target_agreement=0.9)
    ctx = make_context(0.5)
    assert policy.threshold_for(ctx, "distilled") == pytest.approx(0.7)
    ctx.agreement = {"distilled": 0.5}
    assert policy.threshold_for(ctx, "distilled") == pytest.approx(0.9)
    ctx.agreement = {"distilled": 1.0}
    assert policy.threshold_for(ctx, "distilled") == pytest.approx(0.65)
    # a NaN target would clamp the moved threshold to 0 and accept any answer: refused, like a bad trust
    for kwargs, field in (({"target_agreement": float("nan")}, "policy.target_agreement"),
                          ({"trust": "high"}, "policy.trust")):
        with pytest.raises(ConfigError) as info:
            Cascade({"distilled": 0.7}, **kwargs)
        assert info.value.field == field


def test_composition_falls_through_abstentions_and_flattens() -> None:
    composed = Fixed("base") | Fixed("distilled") | Fixed("full")
    assert isinstance(composed, FirstOf) and len(composed.policies) == 3
    assert composed.decide(make_context(0.1, ("distilled", "full"))).tier == "distilled"
    assert composed.decide(make_context(0.1, ("full",))).tier == "full"
    assert composed.decide(make_context(0.1, ("base", "full"))).tier == "base"


def test_decision_names_the_deciding_policy() -> None:
    cascade = Cascade({"base": 0.9})
    composed = Fixed("distilled") | cascade
    assert composed.decide(make_context(0.1, ("base", "full"))).policy is cascade
