"""LearnedPolicy: route on per-tier probabilities of being right, from real fitted models.

1. banking77 through the real Router: base = naive Bayes over 400 words, full = TF-IDF bigrams + logistic SGD (both
   from tests/banking77_models.py), trained on one half of the training set; the probability model (one logistic
   regression per tier over TF-IDF n-grams) is fitted on the tiers' correctness on the other half; everything is
   scored on the 3,080 test questions.
2. GSM8K recorded outcomes with the project's LearnedEstimator (issue 5) fitted on half the rows and the utility
   rule on the other half (data, costs and LAM as in tests/test_policy_bandit.py).
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from tests.banking77_models import load, train_strong, train_weak
from tests.contracts.policy_contract import TIER_NAMES, PolicyContract, make_context
from tests.test_policy_bandit import ARMS, LAM, load_gsm8k

from tierswitch.config import estimator_from_config, policy_from_config, register_estimator
from tierswitch.errors import ConfigError
from tierswitch.estimator.learned import LearnedEstimator
from tierswitch.policies.learned import LearnedPolicy, from_config
from tierswitch.router import Router
from tierswitch.tiers import SklearnTier
from tierswitch.tiers.base import CostModel
from tierswitch.types import Request, RoutingContext

# "learned" is registered by config.py with the estimator builder injected (policies never import config.py)


class TextCorrectness:
    """P(tier right | text): one logistic regression per tier over TF-IDF n-grams, fitted on observed outcomes."""

    def __init__(self, vectorizer, models: dict) -> None:
        self.vectorizer, self.models = vectorizer, models

    def tier_probabilities(self, x, features) -> dict[str, float]:
        row = self.vectorizer.transform([x])
        return {tier: float(model.predict_proba(row)[0, 1]) for tier, model in self.models.items()}


class Table:
    """Fixed probabilities per tier: the input of a policy under test, with a config form."""

    def __init__(self, probabilities: dict[str, float]) -> None:
        self.probabilities = dict(probabilities)

    def tier_probabilities(self, x, features) -> dict[str, float]:
        return self.probabilities

    def to_config(self) -> dict:
        return {"kind": "tier_table", "probabilities": dict(self.probabilities)}


register_estimator("tier_table", lambda config, field: Table(config["probabilities"]))


@pytest.fixture(scope="module")
def banking():
    x_train, y_train = load("train.csv")
    x_test, y_test = load("test.csv")
    perm = np.random.default_rng(0).permutation(len(x_train))
    tiers_half, model_half = perm[:5000], perm[5000:]
    xa, xb = [x_train[i] for i in tiers_half], [x_train[i] for i in model_half]
    weak, strong = train_weak(xa, y_train[tiers_half]), train_strong(xa, y_train[tiers_half])
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2).fit(xb)
    features_b = vectorizer.transform(xb)
    models = {name: LogisticRegression(C=4, max_iter=500).fit(features_b, tier.predict(xb) == y_train[model_half])
              for name, tier in (("base", weak), ("full", strong))}
    return {"x": x_test, "y": y_test, "weak": weak, "strong": strong, "model": TextCorrectness(vectorizer, models)}


class TestLearnedContract(PolicyContract):
    make_policy = staticmethod(lambda: LearnedPolicy(Table({"base": 0.7, "distilled": 0.85, "full": 0.9}),
                                                     TIER_NAMES, threshold=0.8))


class TestLearnedUtilityContract(PolicyContract):
    make_policy = staticmethod(lambda: LearnedPolicy(Table({"base": 0.7, "distilled": 0.85, "full": 0.9}),
                                                     TIER_NAMES, lam=0.05))


def test_router_with_learned_policy_beats_random_routing_at_the_same_cost(banking) -> None:
    base = SklearnTier("base", banking["weak"], cost=CostModel(per_call=1.0))
    full = SklearnTier("full", banking["strong"], cost=CostModel(per_call=10.0))
    router = Router([base, full], LearnedPolicy(banking["model"], ("base", "full"), threshold=0.8), cache=None)
    routed = [router(x) for x in banking["x"]]
    right = np.array([r.output == y for r, y in zip(routed, banking["y"])])
    share = np.mean([r.tier == "full" for r in routed])
    acc_base = np.mean(banking["weak"].predict(banking["x"]) == banking["y"])
    acc_full = np.mean(banking["strong"].predict(banking["x"]) == banking["y"])
    random_same_cost = (1 - share) * acc_base + share * acc_full  # random routing's expected accuracy at this share
    print(f"learned: accuracy {right.mean():.4f} with {share:.1%} full; random at that share {random_same_cost:.4f};"
          f" base {acc_base:.4f}, full {acc_full:.4f}")
    assert 0.2 < share < 0.8
    assert right.mean() >= random_same_cost + 0.025
    assert right.mean() >= acc_full - 0.03  # close to full-tier accuracy ...
    assert np.mean([r.cost for r in routed]) <= 0.7 * 10.0  # ... for well under the cost of always-full


def test_learned_estimator_with_the_utility_rule_beats_both_fixed_tiers() -> None:
    data = load_gsm8k()
    n = len(data["prompts"])
    perm = np.random.default_rng(0).permutation(n)
    train, test = perm[: n // 2], perm[n // 2:]
    estimator = LearnedEstimator(seed=0).fit([data["prompts"][i] for i in train], data["quality"][train],
                                             tiers=list(ARMS))
    mean_cost = data["cost"][train].mean(axis=0)  # known before the call: the tiers' mean recorded cost
    policy = LearnedPolicy(estimator, ARMS, lam=LAM, costs=dict(zip(ARMS, mean_cost)))
    chosen = []
    for i in test:
        ctx = RoutingContext(Request(data["prompts"][i], "text", str(i)), data["features"][i], 0.0, ARMS, {})
        chosen.append(ARMS.index(policy.decide(ctx).tier))
    reward = data["reward"][test, np.array(chosen)].mean()
    fixed = data["reward"][test].mean(axis=0)
    print(f"learned utility rule: reward {reward:.4f}, fixed {fixed.round(4)}, gpt4 share {np.mean(chosen):.3f}")
    assert reward > fixed.max() + 0.01


def test_decision_rules() -> None:
    table = Table({"base": 0.7, "distilled": 0.85, "full": 0.9})
    assert LearnedPolicy(table, TIER_NAMES, threshold=0.8).decide(make_context(0.5)).tier == "distilled"
    assert LearnedPolicy(table, TIER_NAMES, threshold=0.6).decide(make_context(0.5)).tier == "base"
    assert LearnedPolicy(table, TIER_NAMES, threshold=0.95).decide(make_context(0.5)).tier == "full"  # none clears
    per_tier = LearnedPolicy(table, TIER_NAMES, threshold={"base": 0.65, "distilled": 0.99})
    assert per_tier.decide(make_context(0.5)).tier == "base"
    assert per_tier.decide(make_context(0.5, ("distilled", "full"))).tier == "full"
    # utility: costs 1, 2, 3 (the contract's tiers); p - lam * cost
    assert LearnedPolicy(table, TIER_NAMES, lam=0.01).decide(make_context(0.5)).tier == "full"
    assert LearnedPolicy(table, TIER_NAMES, lam=0.1).decide(make_context(0.5)).tier == "distilled"
    assert LearnedPolicy(table, TIER_NAMES, lam=0.2).decide(make_context(0.5)).tier == "base"
    assert LearnedPolicy(table, TIER_NAMES, lam=0.01, costs={"full": 100.0}).decide(
        make_context(0.5)).tier == "distilled"
    unknown = LearnedPolicy(Table({"other": 0.9}), TIER_NAMES)
    assert unknown.decide(make_context(0.5)).tier is None  # no probability for any capable tier: abstain
    with pytest.raises(ConfigError) as info:
        LearnedPolicy(object(), TIER_NAMES)  # type: ignore[arg-type]
    assert info.value.field == "policy.model"


def test_config_round_trip_and_errors_name_the_field(tmp_path) -> None:
    config = {"kind": "learned", "tiers": ["base", "full"], "model": {"kind": "tier_table",
                                                                       "probabilities": {"base": 0.9, "full": 0.95}},
              "threshold": 0.8}
    policy = from_config(config, build_estimator=estimator_from_config)
    assert policy.to_config() == config
    assert policy_from_config(policy.to_config()).decide(make_context(0.5)).tier == "base"
    bad = [
        ({"kind": "learned", "tiers": ["base", "full"]}, "policy.model"),
        ({"kind": "learned", "model": config["model"]}, "policy.tiers"),
        ({**config, "threshold": 1.5}, "policy.threshold"),
        ({**config, "lam": -1}, "policy.lam"),
        ({**config, "costs": {"full": "dear"}}, "policy.costs.full"),
        ({**config, "treshold": 0.8}, "policy.treshold"),
        ({**config, "model": {"kind": "complexity"}}, "policy.model"),
        ({**config, "model": {"kind": "nope"}}, "policy.model.kind"),
    ]
    for broken, field in bad:
        with pytest.raises(ConfigError) as info:
            policy_from_config(broken)
        assert info.value.field == field, (broken, info.value)


def test_saved_learned_estimator_loads_through_config(tmp_path) -> None:
    data = load_gsm8k()
    rows = np.arange(400)
    estimator = LearnedEstimator(seed=0, alphas=(300.0,), ngram_weights=(2.0,)).fit(
        [data["prompts"][i] for i in rows], data["quality"][rows], tiers=list(ARMS))
    estimator.save(tmp_path / "router-model")
    direct = LearnedPolicy(estimator, ARMS, threshold=0.7)
    loaded = policy_from_config({"kind": "learned", "tiers": list(ARMS), "threshold": 0.7,
                                 "model": {"kind": "learned", "path": str(tmp_path / "router-model")}})
    assert loaded.to_config()["model"] == {"kind": "learned", "path": str(tmp_path / "router-model")}
    decisions = []
    for i in range(400, 700):
        ctx = RoutingContext(Request(data["prompts"][i], "text", str(i)), data["features"][i], 0.0, ARMS, {})
        decisions.append((direct.decide(ctx).tier, loaded.decide(ctx).tier))
    assert all(a == b for a, b in decisions)
    assert len({a for a, _ in decisions}) == 2  # both tiers are used
