"""Off-policy evaluation: IPS and SNIPS from decision logs with propensities.

Oracle: on the GSM8K replay every tier's outcome is recorded, so a new policy's true value on the logged requests is
known exactly. The logs come from the ContextualBandit (exploration floor 0.2) on three shuffled passes; the
estimates must fall within their 95% interval of the truth. Data and costs as in tests/test_policy_bandit.py.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from tests.test_policy_bandit import ARMS, BANDIT, LAM, PRICE, load_gsm8k, replay, shuffled_passes

from tierswitch.estimator.base import Estimator
from tierswitch.policies import Fixed, Threshold
from tierswitch.policies.bandit import ContextualBandit
from tierswitch.policies.offline import LoggedDecision, OutcomeLog, evaluate, rows_from_decision_log
from tierswitch.router import Router
from tierswitch.telemetry import DecisionLog as AuditLog
from tierswitch.tiers import CallableTier
from tierswitch.tiers.base import CostModel
from tierswitch.types import DecisionRecord, Features, Request


@pytest.fixture(scope="module")
def gsm8k() -> dict:
    return load_gsm8k()


def _targets(data: dict) -> dict:
    """New policies to evaluate, with the tier index each would choose per row (for the oracle)."""
    median = float(np.median(data["score"]))
    high = float(np.quantile(data["score"], 0.8))
    return {
        "fixed mixtral": (Fixed("mixtral"), np.zeros(len(data["score"]), dtype=int)),
        "fixed gpt4": (Fixed("gpt4"), np.ones(len(data["score"]), dtype=int)),
        "threshold median": (Threshold(list(ARMS), [median]), (data["score"] >= median).astype(int)),
        "threshold top 20%": (Threshold(list(ARMS), [high]), (data["score"] >= high).astype(int)),
    }


def _logged(data: dict, seed: int) -> tuple[OutcomeLog, np.ndarray]:
    log = OutcomeLog()
    order = shuffled_passes(len(data["prompts"]), seed)
    replay(ContextualBandit(ARMS, seed=seed, **BANDIT), data, order, log)
    return log, order


def test_ips_matches_a_hand_computed_case() -> None:
    features = {"modality": "text", "length": 10, "chars": 40, "tokens": 10, "pixels": 0, "elements": 0, "turns": 0,
                "uncertainty": None}
    rows = [LoggedDecision(1, "d1", "text", features, 0.2, ["a", "b"], "a", 0.5, 1.0, 1.0),
            LoggedDecision(2, "d2", "text", features, 0.8, ["a", "b"], "b", 0.25, 4.0, 1.0),
            LoggedDecision(3, "d3", "text", features, 0.9, ["a", "b"], "a", 0.75, 1.0, 0.0)]
    result = evaluate(Fixed("a"), rows, lam=0.5)
    # weights 1/0.5, 0, 1/0.75: IPS cost = (2*1 + 0 + 1.333*1) / 3; SNIPS cost = (2 + 1.333) / (2 + 1.333)
    assert result["cost"]["ips"].value == pytest.approx((2.0 + 4 / 3) / 3)
    assert result["cost"]["snips"].value == pytest.approx(1.0)
    assert result["quality"]["ips"].value == pytest.approx(2.0 / 3)
    assert result["quality"]["snips"].value == pytest.approx(2.0 / (2 + 4 / 3))
    assert result["reward"]["ips"].value == pytest.approx((2 * 0.5 + 4 / 3 * -0.5) / 3)
    values = np.array([2.0, 0.0, 4 / 3])
    assert result["cost"]["ips"].se == pytest.approx(values.std(ddof=1) / math.sqrt(3))
    assert result["cost"]["ips"].matched == 2
    assert result["cost"]["ips"].effective_n == pytest.approx((10 / 3) ** 2 / (4 + 16 / 9))


def test_ips_from_bandit_logs_covers_the_true_replayed_value(gsm8k) -> None:
    log, order = _logged(gsm8k, seed=0)
    rows = log.rows()
    assert len(rows) == len(order)
    for name, (policy, choice) in _targets(gsm8k).items():
        chosen = choice[order]
        truth = {"cost": gsm8k["cost"][order, chosen].mean(), "quality": gsm8k["quality"][order, chosen].mean(),
                 "reward": gsm8k["reward"][order, chosen].mean()}
        result = evaluate(policy, rows, lam=LAM)
        for metric, true_value in truth.items():
            for kind in ("ips", "snips"):
                estimate = result[metric][kind]
                print(f"{name:18s} {metric:7s} {kind:5s} {estimate.value:8.4f} +- {1.96 * estimate.se:.4f} "
                      f"(true {true_value:.4f}, effective n {estimate.effective_n:.0f})")
                assert estimate.low <= true_value <= estimate.high, (name, metric, kind, estimate, true_value)


def test_interval_coverage_over_seeds(gsm8k) -> None:
    """Over independent logs, the 95% intervals hold the truth about 95% of the time: se is not too small."""
    hits = {"ips": [], "snips": []}
    for seed in range(1, 13):
        log, order = _logged(gsm8k, seed)
        rows = log.rows()
        for policy, choice in _targets(gsm8k).values():
            result = evaluate(policy, rows, lam=LAM)
            for metric in ("cost", "quality", "reward"):
                truth = gsm8k[metric][order, choice[order]].mean()
                for kind in hits:
                    hits[kind].append(result[metric][kind].low <= truth <= result[metric][kind].high)
    coverage = {kind: float(np.mean(v)) for kind, v in hits.items()}
    print(f"coverage of 95% intervals over {len(hits['ips'])} estimates: {coverage}")
    assert coverage["ips"] >= 0.88 and coverage["snips"] >= 0.88, coverage


def test_stochastic_target_uses_its_probabilities(gsm8k) -> None:
    log, order = _logged(gsm8k, seed=3)
    uniform = ContextualBandit(ARMS, lam=LAM, epsilon=1.0)  # every arm with probability 1/2 everywhere
    true_reward = gsm8k["reward"][order].mean()  # the mean over both arms
    estimate = evaluate(uniform, log.rows(), lam=LAM)["reward"]["ips"]
    assert estimate.low <= true_reward <= estimate.high
    assert uniform.status()["decisions"] == 0  # asked for probabilities, never made to decide


def test_logs_save_and_load_to_the_same_estimates(gsm8k, tmp_path) -> None:
    log, _ = _logged(gsm8k, seed=4)
    path = tmp_path / "decisions.jsonl"
    log.save(path)
    loaded = OutcomeLog.load(path)
    policy = Threshold(list(ARMS), [float(np.median(gsm8k["score"]))])
    assert evaluate(policy, loaded, lam=LAM) == evaluate(policy, log.rows(), lam=LAM)
    path.write_text(path.read_text().splitlines()[0] + "\n{not json\n")
    with pytest.raises(ValueError, match="decisions.jsonl:2"):
        OutcomeLog.load(path)


def test_bad_logs_are_refused_with_a_reason() -> None:
    features = Features("text", 3, chars=12, tokens=3)
    log = OutcomeLog()
    record = DecisionRecord(1, Request("x", "text", "d"), features, 0.5, ("a", "b"), "a", "r", 0.0, "a", 1.0, 0.0,
                            False, {}, (), {})
    log(record)
    with pytest.raises(ValueError, match="propensity"):
        evaluate(Fixed("a"), log.rows())
    with pytest.raises(ValueError, match="no logged rows"):
        evaluate(Fixed("a"), [])
    cached = DecisionRecord(2, Request("x", "text", "d"), features, None, ("a", "b"), "a", "cache hit", 1.0, "a", 0.0,
                            0.0, True, {}, (), {})
    log(cached)
    assert len(log.rows()) == 1  # a cache hit was not decided by a policy: not logged
    assert not log.feedback(99, 1.0)
    with pytest.raises(ValueError, match="finite"):
        log.feedback(1, float("nan"))
    assert log.rows()[0].quality is None  # nothing half-labelled


def test_router_audit_log_gives_the_same_estimates(gsm8k, tmp_path) -> None:
    """The real Router writing the telemetry DecisionLog (JSONL), labels joined by request id."""
    rows_idx = np.arange(600)
    row_of = {gsm8k["prompts"][i]: i for i in rows_idx}
    tiers = [CallableTier(arm, lambda p, j=j: bool(gsm8k["quality"][row_of[p], j]),
                          cost=CostModel(per_unit=PRICE[j])) for j, arm in enumerate(ARMS)]
    score_of = {gsm8k["prompts"][i]: float(gsm8k["score"][i]) for i in rows_idx}

    class RecordedScore(Estimator):
        """The cross-fitted score of each prompt, computed beforehand by the real estimator."""

        def score_features(self, features, x) -> float:
            return score_of[x]

    bandit = ContextualBandit(ARMS, seed=5, **BANDIT)
    memory = OutcomeLog()
    labels: dict[int, float] = {}
    with AuditLog(tmp_path / "audit.jsonl") as audit:
        router = Router(tiers, bandit, estimator=RecordedScore(), cache=None, hooks=[bandit.observe, memory, audit])
        for i in np.concatenate([rows_idx, rows_idx]):
            routed = router(gsm8k["prompts"][i])
            labels[routed.request_id] = float(routed.output)
            bandit.feedback(routed.request_id, quality=float(routed.output))
            memory.feedback(routed.request_id, float(routed.output))
    from_audit = rows_from_decision_log(tmp_path / "audit.jsonl", labels)
    assert len(from_audit) == len(memory.rows()) == 2 * len(rows_idx)
    policy = Threshold(list(ARMS), [float(np.median(gsm8k["score"]))])
    assert evaluate(policy, from_audit, lam=LAM) == evaluate(policy, memory.rows(), lam=LAM)
