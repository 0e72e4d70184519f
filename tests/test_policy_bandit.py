"""ContextualBandit on a replay of real recorded outcomes: GSM8K answered by Mixtral-8x7B and GPT-4.

Data: ../shared/data/gsm8k-routellm, decontaminated (the 12 prompts of contaminated_prompts.jsonl dropped: 1,307
rows). Cost of a request: the data README's per-token prices ($0.24/M Mixtral, $24.7/M GPT-4) times approximate
tokens (chars/4) of prompt plus that model's recorded response, in milli-dollars. Reward = correct - LAM * cost;
LAM = 0.055 per milli-dollar makes the two fixed tiers nearly equal (~0.635), where routing matters most.

Context: the score of a real estimator, a TF-IDF logistic regression predicting "GPT-4 right and Mixtral wrong",
cross-fitted (5 folds), so no row is scored by a model that saw its label. The replay is three shuffled passes over
the rows (seeded); the first WARMUP requests are the warm-up.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_predict
from tests.contracts.policy_contract import TIER_NAMES, PolicyContract, make_context

from tierswitch.config import register_policy
from tierswitch.errors import ConfigError
from tierswitch.estimator import extract_features
from tierswitch.estimator.base import Estimator
from tierswitch.policies.bandit import ContextualBandit, from_config
from tierswitch.policies.offline import OutcomeLog
from tierswitch.router import Router
from tierswitch.tiers import CallableTier
from tierswitch.tiers.base import CostModel
from tierswitch.types import DecisionRecord, Prediction, Request, RoutingContext

register_policy("bandit", "tierswitch.policies.bandit:from_config")  # the line config.py gets; idempotent

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "gsm8k-routellm"
MIXTRAL, GPT4 = "mistralai/Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview"
ARMS = ("mixtral", "gpt4")
PRICE = (0.24e-3, 24.7e-3)  # milli-dollars per token
LAM = 0.055
WARMUP, PASSES = 300, 3
BANDIT = {"lam": LAM, "alpha": 1.0, "epsilon": 0.2, "features": ("bias", "score")}


def load_gsm8k() -> dict:
    """Decontaminated rows: prompts, per-arm correctness (n, 2), per-arm cost (n, 2) and a cross-fitted score."""
    with open(DATA / "contaminated_prompts.jsonl", encoding="utf-8") as f:
        dropped = {json.loads(line)["eval_prompt"] for line in f if line.strip()}
    with open(DATA / "gsm8k_responses.csv", newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["prompt"] not in dropped]
    assert len(rows) == 1307

    def tokens(text: str) -> int:
        return (len(text) + 3) // 4

    quality = np.array([[r[MIXTRAL] == "True", r[GPT4] == "True"] for r in rows], dtype=float)
    cost = np.array([[price * (tokens(r["prompt"]) + tokens(r[m + "_response"]))
                      for price, m in zip(PRICE, (MIXTRAL, GPT4))] for r in rows])
    prompts = [r["prompt"] for r in rows]
    x = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True).fit_transform(prompts)
    needs_gpt4 = (quality[:, 1] > quality[:, 0]).astype(int)
    score = cross_val_predict(LogisticRegression(max_iter=1000), x, needs_gpt4, cv=5, method="predict_proba")[:, 1]
    return {"prompts": prompts, "quality": quality, "cost": cost, "score": score,
            "features": [extract_features(p) for p in prompts], "reward": quality - LAM * cost}


def replay(bandit: ContextualBandit, data: dict, order: np.ndarray, log: OutcomeLog | None = None) -> dict:
    """Serve ``order`` with the bandit over recorded outcomes: decide, record, reward with the recorded truth."""
    n = len(order)
    chosen, propensity = np.zeros(n, dtype=int), np.zeros(n)
    for k, i in enumerate(order):
        features = data["features"][i]
        ctx = RoutingContext(Request(data["prompts"][i], "text", str(i)), features, float(data["score"][i]), ARMS, {})
        decision = bandit.decide(ctx)
        arm = ARMS.index(decision.tier)
        record = DecisionRecord(k, ctx.request, features, ctx.score, ARMS, decision.tier, decision.reason,
                                decision.propensity, decision.tier, float(data["cost"][i, arm]), 0.0, False, {}, (), {})
        bandit.observe(record)
        assert bandit.feedback(k, quality=float(data["quality"][i, arm]))
        if log is not None:
            log.observe(record)
            log.feedback(k, float(data["quality"][i, arm]))
        chosen[k], propensity[k] = arm, decision.propensity
    return {"order": order, "chosen": chosen, "propensity": propensity,
            "reward": data["reward"][order, chosen]}


def shuffled_passes(n_rows: int, seed: int, passes: int = PASSES) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.permutation(n_rows) for _ in range(passes)])


def tuned_threshold_reward(data: dict, rows: np.ndarray) -> float:
    """The best threshold policy on the score, tuned on the very rows it is scored on (an optimistic reference)."""
    score, reward = data["score"], data["reward"]
    return max(float(np.where(score[rows] >= cut, reward[rows, 1], reward[rows, 0]).mean())
               for cut in np.quantile(score, np.linspace(0, 1, 41)))


@pytest.fixture(scope="module")
def gsm8k() -> dict:
    return load_gsm8k()


class TestBanditContract(PolicyContract):
    randomised = True
    make_policy = staticmethod(lambda: ContextualBandit(TIER_NAMES, lam=0.1, seed=3))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bandit_beats_the_best_fixed_tier_after_warmup(gsm8k, seed) -> None:
    bandit = ContextualBandit(ARMS, seed=seed, **BANDIT)
    run = replay(bandit, gsm8k, shuffled_passes(len(gsm8k["prompts"]), seed))
    later = run["order"][WARMUP:]
    bandit_reward = float(run["reward"][WARMUP:].mean())
    fixed = gsm8k["reward"][later].mean(axis=0)
    threshold = tuned_threshold_reward(gsm8k, later)
    print(f"seed {seed}: bandit {bandit_reward:.4f}, fixed mixtral {fixed[0]:.4f} gpt4 {fixed[1]:.4f}, "
          f"tuned threshold {threshold:.4f}, gpt4 share {run['chosen'][WARMUP:].mean():.3f}")
    assert bandit_reward > fixed.max()
    assert bandit_reward < threshold + 0.02  # a sanity bound: the in-sample tuned threshold is hard to beat


def test_propensities_are_logged_and_floored(gsm8k) -> None:
    bandit = ContextualBandit(ARMS, seed=7, **BANDIT)
    run = replay(bandit, gsm8k, shuffled_passes(len(gsm8k["prompts"]), 7, passes=1))
    assert run["propensity"].min() >= 0.2 / 2 - 1e-12  # the exploration floor: epsilon spread over two arms
    assert set(np.round(run["propensity"], 9)) <= {0.1, 0.9}
    explored = run["propensity"] < 0.5
    assert 0.06 < explored.mean() < 0.14  # about epsilon / 2 of the choices go against the greedy arm
    ctx = RoutingContext(Request("q", "text", "d"), gsm8k["features"][0], 0.3, ARMS, {})
    probs = bandit.probabilities(ctx)
    assert sum(probs.values()) == pytest.approx(1.0) and min(probs.values()) == pytest.approx(0.1)
    status = bandit.status()
    assert status["decisions"] == len(run["order"]) and status["pending"] == 0
    assert sum(status["updates"].values()) == len(run["order"])


def test_feedback_pairs_with_observed_requests_once() -> None:
    bandit = ContextualBandit(("base", "full"), lam=0.5, epsilon=0.0)
    ctx = make_context(0.4, ("base", "full"))
    decision = bandit.decide(ctx)
    record = DecisionRecord(11, ctx.request, ctx.features, 0.4, ctx.capable, decision.tier, decision.reason,
                            decision.propensity, decision.tier, 2.0, 0.0, False, {}, (), {})
    bandit.observe(record)
    assert bandit.status()["pending"] == 1
    assert not bandit.feedback(12, quality=1.0)  # never decided
    assert bandit.feedback(11, quality=1.0)
    assert not bandit.feedback(11, quality=1.0)  # rewarded once only
    assert bandit.status()["mean_reward"][decision.tier] == pytest.approx(1.0 - 0.5 * 2.0)
    with pytest.raises(ValueError):
        bandit.feedback(11, reward=1.0, quality=1.0)
    foreign = DecisionRecord(13, ctx.request, ctx.features, 0.4, ctx.capable, "base", "threshold: ...", 1.0, "base",
                             1.0, 0.0, False, {}, (), {})
    bandit.observe(foreign)  # decided by another policy: not the bandit's to learn from
    assert not bandit.feedback(13, quality=1.0)


def test_shadow_samples_reward_at_once() -> None:
    bandit = ContextualBandit(("base", "full"), lam=0.0, epsilon=1.0, shadow_quality=True, seed=1)
    for k in range(40):
        ctx = make_context(0.5, ("base", "full"))
        decision = bandit.decide(ctx)
        answer = Prediction("A", decision.tier, "1", 1.0, 0.0)
        full = Prediction("A" if k % 4 else "B", "full", "1", 1.0, 0.0)  # base agrees with full 3 times in 4
        predictions = {decision.tier: answer, "full": full if decision.tier == "base" else answer}
        bandit.observe(DecisionRecord(k, ctx.request, ctx.features, 0.5, ctx.capable, decision.tier, decision.reason,
                                      decision.propensity, decision.tier, 1.0, 0.0, False, predictions, (), {}))
    status = bandit.status()
    assert status["pending"] == 0 and sum(status["updates"].values()) == 40
    assert status["mean_reward"]["full"] == pytest.approx(1.0)
    assert 0.4 < status["mean_reward"]["base"] < 1.0


class _ScoreEstimator(Estimator):
    """A real fitted estimator: the probability that GPT-4 is needed, from a TF-IDF logistic regression."""

    def __init__(self, vectorizer, model) -> None:
        self.vectorizer, self.model = vectorizer, model

    def score_features(self, features, x) -> float:
        return float(self.model.predict_proba(self.vectorizer.transform([x]))[0, 1])


def test_through_the_router_with_recorded_tiers(gsm8k) -> None:
    """The real Router: two recorded tiers, a fitted score on half the rows, the bandit as hook and feedback sink."""
    n = len(gsm8k["prompts"])
    rng = np.random.default_rng(11)
    perm = rng.permutation(n)
    train, serve = perm[: n // 2], perm[n // 2:]
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    x_train = vectorizer.fit_transform([gsm8k["prompts"][i] for i in train])
    needs = (gsm8k["quality"][train, 1] > gsm8k["quality"][train, 0]).astype(int)
    estimator = _ScoreEstimator(vectorizer, LogisticRegression(max_iter=1000).fit(x_train, needs))
    row_of = {gsm8k["prompts"][i]: i for i in serve}
    tiers = [CallableTier(arm, lambda p, j=j: bool(gsm8k["quality"][row_of[p], j]), cost=CostModel(per_unit=PRICE[j]))
             for j, arm in enumerate(ARMS)]
    bandit = ContextualBandit(ARMS, seed=0, **BANDIT)
    log = OutcomeLog()
    records: list[DecisionRecord] = []
    router = Router(tiers, bandit, estimator=estimator, cache=None, hooks=[bandit.observe, log, records.append])
    for i in np.concatenate([serve, serve]):
        routed = router(gsm8k["prompts"][i])
        quality = float(routed.output)  # the tier's recorded answer: was it right
        assert bandit.feedback(routed.request_id, quality=quality)
        log.feedback(routed.request_id, quality)
    assert router.stats.snapshot().get("hook_errors", 0) == 0
    assert len(records) == 2 * len(serve)
    assert all(r.propensity in (pytest.approx(0.1), pytest.approx(0.9)) for r in records)
    assert all(r.reason.startswith("bandit:") for r in records)
    status = bandit.status()
    assert status["pending"] == 0 and sum(status["updates"].values()) == len(records)
    assert status["updates"]["mixtral"] > 0.05 * len(records) and status["updates"]["gpt4"] > 0.05 * len(records)
    assert len(log.rows()) == len(records) and all(row.quality is not None for row in log.rows())


def test_config_round_trip_and_errors_name_the_field() -> None:
    policy = from_config({"kind": "bandit", "tiers": ["base", "full"], "lam": 0.1, "features": ["bias", "score"]})
    config = policy.to_config()
    assert from_config(config).to_config() == config
    assert ContextualBandit.from_config(config).to_config() == config
    bad = [
        ({"kind": "bandit"}, "policy.tiers"),
        ({"kind": "bandit", "tiers": ["a"]}, "policy.tiers"),
        ({"kind": "bandit", "tiers": ["a", "b"], "epsilon": 1.5}, "policy.epsilon"),
        ({"kind": "bandit", "tiers": ["a", "b"], "lam": -1}, "policy.lam"),
        ({"kind": "bandit", "tiers": ["a", "b"], "features": ["bias", "colour"]}, "policy.features"),
        ({"kind": "bandit", "tiers": ["a", "b"], "features": "bias"}, "policy.features"),
        ({"kind": "bandit", "tiers": ["a", "b"], "decay": 0}, "policy.decay"),
        ({"kind": "bandit", "tiers": ["a", "b"], "warmup": -1}, "policy.warmup"),
        ({"kind": "bandit", "tiers": ["a", "b"], "warmup": "10"}, "policy.warmup"),
        ({"kind": "bandit", "tiers": ["a", "b"], "alpah": 1}, "policy.alpah"),
    ]
    for config, field in bad:
        with pytest.raises(ConfigError) as info:
            from_config(config)
        assert info.value.field == field, (config, info.value)
