"""ABTest: split traffic by a stable hash (or run a candidate in shadow) and report each arm with intervals.

Real models on banking77 (base: naive Bayes over 400 words, full: TF-IDF bigrams + logistic SGD; the session
fixture ``banking77`` from tests/banking77_models.py), the probe estimator, the real Router. Oracle: each arm's
policy run alone over all 3,080 test questions gives its true accuracy and cost; the split estimates each from its
half and must cover the truth with its 95% interval.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import yaml
from tests.contracts.policy_contract import PolicyContract, make_context

from tierswitch.config import policy_from_config, register_policy
from tierswitch.errors import ConfigError
from tierswitch.estimator import ComplexityEstimator
from tierswitch.policies import Cascade, Fixed, Threshold
from tierswitch.policies.ab import ABTest
from tierswitch.policies.bandit import ContextualBandit
from tierswitch.router import Router
from tierswitch.tiers import SklearnTier
from tierswitch.tiers.base import CostModel
from tierswitch.types import DecisionRecord

register_policy("bandit", "tierswitch.policies.bandit:from_config")  # the line config.py gets; idempotent
# ("ab" is registered by config.py with its arm builder injected: tierswitch.policies.ab never imports config.py)


@pytest.fixture(scope="module")
def banking(banking77):
    x_test, y_test = banking77.x_test, banking77.y_test
    tiers = [SklearnTier("base", banking77.weak, cost=CostModel(per_call=1.0)),
             SklearnTier("full", banking77.strong, cost=CostModel(per_call=10.0))]
    estimator = ComplexityEstimator(probe="base", length_weight=0.5)
    scores = estimator.score_many(x_test, tiers[0].predict(x_test))
    return {"x": x_test, "y": y_test, "tiers": tiers, "estimator": estimator, "median": float(np.median(scores))}


def _route_all(banking, policy, hooks=(), feedback=None, n=None) -> list:
    router = Router(banking["tiers"], policy, estimator=banking["estimator"], cache=None, hooks=list(hooks))
    out = []
    for x, y in zip(banking["x"][:n], banking["y"][:n]):
        routed = router(x)
        if feedback is not None:
            feedback(routed.request_id, quality=float(routed.output == y))
        out.append(routed)
    assert router.stats.snapshot().get("hook_errors", 0) == 0
    return out


class TestSplitContract(PolicyContract):
    make_policy = staticmethod(lambda: ABTest(Fixed("base"), Threshold(["distilled", "full"], [0.5]), share_b=0.3))


class TestShadowContract(PolicyContract):
    make_policy = staticmethod(lambda: ABTest(Cascade({"base": 0.8}), Fixed("full"), mode="shadow"))


def test_split_is_stable_and_proportional() -> None:
    digests = [hashlib.blake2b(str(i).encode(), digest_size=16).hexdigest() for i in range(20_000)]
    ab = ABTest(Fixed("base"), Fixed("full"), share_b=0.3, salt="exp-1")
    arms = [ab.arm_of(d) for d in digests]
    assert arms.count("b") / len(arms) == pytest.approx(0.3, abs=0.01)
    again = ABTest(Fixed("base"), Fixed("full"), share_b=0.3, salt="exp-1")  # another process, same config
    assert [again.arm_of(d) for d in digests] == arms
    other = ABTest(Fixed("base"), Fixed("full"), share_b=0.3, salt="exp-2")
    same = np.mean([other.arm_of(d) == a for d, a in zip(digests, arms)])
    assert same == pytest.approx(0.7**2 + 0.3**2, abs=0.02)  # a new salt reshuffles independently
    ctx = make_context(0.5)
    assert ab.decide(ctx).reason.startswith(f"ab[{ab.arm_of(ctx.request.digest)}]")


def test_split_reports_each_arm_with_intervals_that_cover_the_truth(banking) -> None:
    a = Threshold(["base", "full"], [banking["median"]])
    b = Cascade({"base": 0.6})
    truth = {}
    for name, policy in (("a", a), ("b", b)):
        routed = _route_all(banking, policy)
        truth[name] = {"quality": np.mean([r.output == y for r, y in zip(routed, banking["y"])]),
                       "cost": np.mean([r.cost for r in routed])}
    ab = ABTest(a, b, share_b=0.5, salt="banking")
    records: list[DecisionRecord] = []
    _route_all(banking, ab, hooks=[ab.observe, records.append], feedback=ab.feedback)
    report = ab.report()
    for arm in ("a", "b"):
        stats = report["arms"][arm]
        print(arm, {m: (round(stats[m]["mean"], 4), round(stats[m]["low"], 4), round(stats[m]["high"], 4))
                    for m in ("quality", "cost")}, "truth", truth[arm])
        assert stats["requests"] == pytest.approx(len(banking["x"]) / 2, rel=0.06)
        for metric in ("quality", "cost"):
            assert stats[metric]["low"] <= truth[arm][metric] <= stats[metric]["high"], (arm, metric, stats[metric])
    for metric in ("quality", "cost"):
        delta = truth["b"][metric] - truth["a"][metric]
        assert report["b_minus_a"][metric]["low"] <= delta <= report["b_minus_a"][metric]["high"]
    # agreement with the full tier, recomputed from the records: full served, or both answers known
    for arm in ("a", "b"):
        mine = [r for r in records if ab.arm_of(r.request.digest) == arm]
        known = [r for r in mine if r.tier == "full" or "full" in r.predictions]
        agreed = sum(r.tier == "full" or r.predictions[r.tier].output == r.predictions["full"].output for r in known)
        assert report["arms"][arm]["agreement_with_full"]["n"] == len(known)
        assert report["arms"][arm]["agreement_with_full"]["mean"] == pytest.approx(agreed / len(known))


def test_shadow_candidate_is_measured_against_the_serving_full_tier(banking) -> None:
    candidate = Threshold(["base", "full"], [banking["median"]])
    ab = ABTest(Fixed("full"), candidate, mode="shadow")
    xs = banking["x"][:1500]
    routed = _route_all(banking, ab, hooks=[ab.observe], n=len(xs))
    assert {r.tier for r in routed} == {"full"}  # the shadow decides, never serves
    report = ab.report()["arms"]
    assert report["a"]["agreement_with_full"]["mean"] == 1.0
    # the truth, offline: where the candidate picks base, does base's answer equal full's?
    base, full = banking["tiers"]
    scores = banking["estimator"].score_many(xs, base.predict(xs))
    picks_base = scores < banking["median"]
    same = np.array([p.output for p in base.predict(xs)]) == np.array([r.output for r in routed])
    b = report["b"]
    assert b["requests"] == len(routed)
    assert b["tiers"]["base"] == int(picks_base.sum())
    assert b["agreement_with_full"]["mean"] == pytest.approx(np.mean(np.where(picks_base, same, True)))
    assert b["cost"]["mean"] == pytest.approx(np.mean(np.where(picks_base, 1.0, 10.0)))
    assert report["a"]["cost"]["mean"] == pytest.approx(11.0)  # probe + full on every request


def test_records_and_feedback_reach_a_learning_arm() -> None:
    bandit = ContextualBandit(("base", "full"), epsilon=0.5, seed=0)
    ab = ABTest(Fixed("base"), bandit, share_b=0.5)
    rewarded = 0
    for k in range(200):
        ctx = make_context(k / 200, ("base", "full"))
        ctx.request = type(ctx.request)("payload", "text", f"digest-{k}")
        decision = ab.decide(ctx)
        ab.observe(DecisionRecord(k, ctx.request, ctx.features, ctx.score, ctx.capable, decision.tier,
                                  decision.reason, decision.propensity, decision.tier, 1.0, 0.0, False, {}, (), {}))
        assert ab.feedback(k, quality=1.0)
        rewarded += ab.arm_of(ctx.request.digest) == "b"
    assert sum(bandit.status()["updates"].values()) == rewarded > 50
    assert not ab.feedback(999, quality=1.0)
    counted = ab.report()["arms"]["b"]["quality"]["n"]
    with pytest.raises(ValueError, match="exactly one"):  # refused before anything is counted
        ab.feedback(next(k for k in range(200) if ab.arm_of(f"digest-{k}") == "b"), reward=1.0, quality=1.0)
    assert ab.report()["arms"]["b"]["quality"]["n"] == counted


def test_one_config_line() -> None:
    line = ("policy: {kind: ab, a: {kind: fixed, tier: full}, b: {kind: threshold, tiers: [base, full], "
            "cuts: [0.4]}, share_b: 0.2, mode: split, salt: exp-7}")
    policy = policy_from_config(yaml.safe_load(line)["policy"])
    assert isinstance(policy, ABTest) and policy.share_b == 0.2
    assert policy_from_config(policy.to_config()).to_config() == policy.to_config()
    bad = [
        ({"kind": "ab", "a": {"kind": "fixed", "tier": "full"}}, "policy.b"),
        ({"kind": "ab", "a": {"kind": "fixed", "tier": "full"}, "b": {"kind": "fixed"}}, "policy.b.tier"),
        ({"kind": "ab", "a": {"kind": "nope"}, "b": {"kind": "fixed", "tier": "base"}}, "policy.a.kind"),
        ({"kind": "ab", "a": {"kind": "fixed", "tier": "a"}, "b": {"kind": "fixed", "tier": "b"}, "mode": "canary"},
         "policy.mode"),
        ({"kind": "ab", "a": {"kind": "fixed", "tier": "a"}, "b": {"kind": "fixed", "tier": "b"}, "share_b": 2},
         "policy.share_b"),
        ({"kind": "ab", "a": {"kind": "fixed", "tier": "a"}, "b": {"kind": "fixed", "tier": "b"}, "shares": 2},
         "policy.shares"),
    ]
    for config, field in bad:
        with pytest.raises(ConfigError) as info:
            policy_from_config(config)
        assert info.value.field == field, (config, info.value)
