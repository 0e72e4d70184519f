"""Per-request decision cost of the per-tier outcome models (GSM8K questions, models fitted on 653 rows).

    PYTHONPATH=src python -m pytest benchmarks/bench_outcome.py --benchmark-only
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tierswitch.bench.spec import load_spec
from tierswitch.bench.split import holdout
from tierswitch.bench.table import load_replay
from tierswitch.estimator.outcome import TierOutcomeModel
from tierswitch.policies.online_outcome import OnlineOutcomePolicy

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def rows():
    data = load_replay(load_spec(ROOT / "examples" / "gsm8k" / "replay.yaml", base_dir=ROOT))
    split = holdout(len(data), 0.5, 0)
    return data.subset(split.train), data.subset(split.test)


@pytest.fixture(scope="module")
def text200(rows):
    return next(x for x in rows[1].inputs if 180 <= len(x) <= 220)


@pytest.mark.parametrize("models", [("ridge",), ("knn",), ("ridge", "knn")])
def test_tier_probabilities_one_request(benchmark, rows, text200, models):
    train, _ = rows
    model = TierOutcomeModel(models=models, seed=0).fit(train.inputs, train.outcomes, train.tiers)
    benchmark(model.tier_probabilities, text200)


def test_online_policy_probabilities_one_request(benchmark, rows, text200):
    train, _ = rows
    policy = OnlineOutcomePolicy(list(train.tiers))
    for x, y in zip(train.inputs, train.outcomes):
        policy.learn("mixtral", x, y[0], 0.5)
    benchmark(policy.probabilities, text200)
