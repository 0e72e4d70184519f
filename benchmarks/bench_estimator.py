"""Per-request scoring of the LearnedEstimator against scikit-learn's own per-call path, in the same run.

Run: .venv/bin/python -m pytest benchmarks/bench_estimator.py --benchmark-only -p no:cacheprovider
The estimator is fitted once (setup, not timed) on half of RouteLLM's GSM8K rows (../shared/data, seed 0).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tierswitch.bench.spec import load_spec
from tierswitch.bench.split import holdout
from tierswitch.bench.table import load_replay
from tierswitch.estimator.learned import LearnedEstimator

ROOT = Path(__file__).resolve().parents[1]
SHORT = "What is the capital of France, and why?"


@pytest.fixture(scope="module")
def fitted():
    data = load_replay(load_spec(ROOT / "examples" / "gsm8k" / "replay.yaml", base_dir=ROOT))
    split = holdout(len(data), 0.5, seed=0)
    train, test = data.subset(split.train), data.subset(split.test)
    est = LearnedEstimator(seed=0).fit(train.inputs, train.outcomes)
    question = min(test.inputs, key=lambda q: abs(len(q) - np.median([len(x) for x in test.inputs])))
    return est, question


def test_learned_score_one_short_text(benchmark, fitted):
    est, _ = fitted
    benchmark(est.score_one, SHORT)


def test_learned_score_one_gsm8k_question(benchmark, fitted):
    est, question = fitted
    benchmark(est.score_one, question)


def test_sklearn_ridge_predict_prebuilt_row(benchmark, fitted):
    """scikit-learn's per-call overhead alone: predict on a design row built outside the timed part."""
    est, question = fitted
    model, design = est._state["sklearn"]
    row = design[:1]
    benchmark(model.predict, row)


def test_sklearn_path_featurise_and_predict(benchmark, fitted):
    """What scoring costs without the extraction: build the sparse row the model was fitted on, then predict."""
    from scipy import sparse

    est, question = fitted
    model, design = est._state["sklearn"]
    report = est.fit_report()
    # rebuild the fitted column layout: dense block (standardised) then the n-gram block
    n_dense = len(est.feature_names())

    def score(x):
        dense, buckets = est.design([x])
        cols = [c for b in buckets[0] if (c := est._state["columns"].get(b)) is not None]
        grams = sparse.csr_matrix((np.full(len(cols), report["ngram_weight"]), (np.zeros(len(cols)), cols)),
                                  shape=(1, design.shape[1] - n_dense))
        return model.predict(sparse.hstack([sparse.csr_matrix(dense), grams]).tocsr())

    benchmark(score, question)


def test_sklearn_logistic_predict_proba_one_row(benchmark):
    """The reference figure of the issue: one predict_proba call of a small fitted LogisticRegression."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 27))
    model = LogisticRegression().fit(x, (x[:, 0] > 0).astype(int))
    benchmark(model.predict_proba, x[:1])
