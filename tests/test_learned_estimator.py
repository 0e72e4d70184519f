"""LearnedEstimator: fitted on real recorded outcomes (GSM8K), served as plain Python, saved without pickle."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tierswitch.bench.spec import load_spec
from tierswitch.bench.split import holdout
from tierswitch.bench.table import load_replay
from tierswitch.errors import ConfigError, NotFittedError
from tierswitch.estimator.base import Estimator
from tierswitch.estimator.learned import DENSE_FEATURES, LearnedEstimator, text_of

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "examples" / "gsm8k" / "replay.yaml"


@pytest.fixture(scope="module")
def gsm8k():
    data = load_replay(load_spec(SPEC, base_dir=ROOT))
    split = holdout(len(data), 0.5, seed=0)
    return data.subset(split.train), data.subset(split.test)


@pytest.fixture(scope="module")
def fitted(gsm8k):
    train, _ = gsm8k
    return LearnedEstimator(seed=0).fit(train.inputs, train.outcomes, tiers=train.tiers)


def test_is_an_estimator_and_refuses_to_score_before_fit():
    est = LearnedEstimator()
    assert isinstance(est, Estimator) and not est.fitted
    with pytest.raises(NotFittedError):
        est.score_one("How many apples?")
    with pytest.raises(NotFittedError):
        est.fit_report()


def test_extracted_model_equals_sklearn_predict(fitted, gsm8k):
    model, design = fitted._state["sklearn"]
    train, _ = gsm8k
    expected = model.predict(design)
    ours = np.array([fitted.raw_outputs(x) for x in train.inputs])
    assert ours.shape == expected.shape == (len(train), 2)
    assert np.max(np.abs(ours - expected)) < 1e-9
    gain = np.clip(0.5 + 0.5 * (expected[:, 1] - expected[:, 0]), 0, 1)
    assert np.max(np.abs(fitted.score_many(train.inputs) - gain)) < 1e-9


def test_scores_are_in_range_and_single_equals_batch_bit_for_bit(fitted, gsm8k):
    _, test = gsm8k
    many = fitted.score_many(test.inputs)
    assert many.min() >= 0.0 and many.max() <= 1.0 and np.std(many) > 0.01
    assert [fitted.score_one(x) for x in test.inputs[:50]] == many[:50].tolist()
    assert fitted.score_one([{"role": "user", "content": test.inputs[0]}]) == many[0]  # conversations: their text


def test_fit_report_says_what_cv_chose(fitted, gsm8k):
    report = fitted.fit_report()
    assert report["rows"] == len(gsm8k[0]) and report["target"] == "gain" and report["tiers"] == ["mixtral", "gpt4"]
    assert report["alpha"] in fitted.alphas and report["ngram_weight"] in fitted.ngram_weights
    assert len(report["grid"]) == len(fitted.alphas) * len(fitted.ngram_weights)
    assert min(g["cv_mse"] for g in report["grid"]) == report["cv_mse"]


def test_save_load_round_trip_is_exact_and_pickle_free(fitted, gsm8k, tmp_path):
    _, test = gsm8k
    path = fitted.save(tmp_path / "model")
    assert sorted(p.name for p in path.iterdir()) == ["estimator.json", "weights.npz"]
    with np.load(path / "weights.npz", allow_pickle=False) as npz:  # plain numeric arrays only
        assert all(npz[k].dtype.kind in "fi" for k in npz.files)
    meta = json.loads((path / "estimator.json").read_text())
    assert meta["format"] == "tierswitch.learned/1" and meta["features"][: len(DENSE_FEATURES)] == list(DENSE_FEATURES)
    loaded = LearnedEstimator.load(path)
    assert loaded.score_many(test.inputs).tolist() == fitted.score_many(test.inputs).tolist()
    assert loaded.to_config() == {"kind": "learned", "path": str(path)}


def test_scores_are_identical_in_another_process_with_another_hash_seed(fitted, gsm8k, tmp_path):
    _, test = gsm8k
    path = fitted.save(tmp_path / "model")
    (tmp_path / "inputs.json").write_text(json.dumps(test.inputs[:100]))
    code = ("import json,sys; from tierswitch.estimator.learned import LearnedEstimator as L; "
            "e=L.load(sys.argv[1]); xs=json.load(open(sys.argv[2])); "
            "print(json.dumps([e.score_one(x).hex() for x in xs]))")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code, str(path), str(tmp_path / "inputs.json")], env=env,
                         capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(out.stdout) == [s.hex() for s in fitted.score_many(test.inputs[:100])]


def test_config_registry_builds_it_from_a_path(fitted, gsm8k, tmp_path):
    from tierswitch.config import estimator_from_config

    path = fitted.save(tmp_path / "model")
    est = estimator_from_config({"kind": "learned", "path": str(path)})
    assert isinstance(est, LearnedEstimator)
    assert est.score_one(gsm8k[1].inputs[3]) == fitted.score_one(gsm8k[1].inputs[3])
    unfitted = LearnedEstimator.from_config({"kind": "learned", "alphas": [10.0], "seed": 3})
    assert unfitted.alphas == (10.0,) and unfitted.seed == 3 and not unfitted.fitted
    assert unfitted.to_config()["alphas"] == [10.0]


@pytest.mark.parametrize("config,field", [
    ({"kind": "learned", "alphas": [-1]}, "estimator.alphas"),
    ({"kind": "learned", "alphas": ["x"]}, "estimator.alphas"),
    ({"kind": "learned", "numeric": "steps"}, "estimator.numeric"),
    ({"kind": "learned", "ngram_weights": []}, "estimator.ngram_weights"),
    ({"kind": "learned", "cv_folds": 1}, "estimator.cv_folds"),
    ({"kind": "learned", "numeric": [3]}, "estimator.numeric"),
    ({"kind": "learned", "colour": 1}, "estimator.colour"),
    ({"kind": "learned", "path": "/nonexistent/model"}, "estimator.path"),
    ({"kind": "learned", "path": "x", "seed": 1}, "estimator.seed"),
])
def test_config_errors_name_the_field(config, field):
    from tierswitch.config import estimator_from_config

    with pytest.raises(ConfigError) as info:
        estimator_from_config(config)
    assert info.value.field == field


def test_corrupt_saved_weights_are_refused(fitted, tmp_path):
    path = fitted.save(tmp_path / "model")
    with np.load(path / "weights.npz", allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["dense_w"] = arrays["dense_w"][:, :3]
    np.savez(path / "weights.npz", **arrays)
    with pytest.raises(ConfigError, match="shapes"):
        LearnedEstimator.load(path)


@pytest.mark.parametrize("y,match", [(np.zeros((30, 2, 2)), "shape"), (np.full(30, 2.0), "within"),
                                     (np.zeros(29), "rows")])
def test_bad_outcomes_are_refused(y, match):
    xs = [f"question number {i} with {i % 7} apples" for i in range(30)]
    with pytest.raises(ConfigError, match=match):
        LearnedEstimator().fit(xs, y)


def test_need_target_and_numeric_features_are_learned():
    rng = np.random.default_rng(0)
    n = 400
    steps = rng.integers(1, 9, size=n)
    xs = [{"text": f"item {i} of the list", "steps": float(s)} for i, s in enumerate(steps)]
    need = (steps + rng.normal(0, 1.0, n) > 5).astype(float)  # the expensive tier is needed for many steps
    est = LearnedEstimator(numeric=["steps"], seed=0).fit(xs[:300], need[:300])
    scores = est.score_many(xs[300:])
    from sklearn.metrics import roc_auc_score

    assert est.fit_report()["target"] == "need"
    assert roc_auc_score(need[300:], scores) > 0.8
    assert "numeric:steps" in est.feature_names()


def test_text_of_reads_strings_conversations_and_text_parts():
    assert text_of("abc") == "abc"
    assert text_of([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]) == "hi\nyo"
    assert text_of({"text": "part", "n": 3}) == "part"
    assert text_of(np.zeros(3)) == ""


def test_weights_of_another_save_are_refused_not_mixed_in(tmp_path):
    # What a reader sees if a save over an existing estimator stops between its two files (or reads in between):
    # the new weights beside the old estimator.json. Same shapes, so only the saved checksum can tell.
    def fit(offset: int) -> LearnedEstimator:
        xs = [f"question {i} has {(i * 7 + offset) % 11} apples and {i % 3} pears" for i in range(40)]
        need = [float((i + offset) % 3 == 0) for i in range(40)]
        return LearnedEstimator(alphas=[10.0], ngram_weights=[2.0], cv_folds=2).fit(xs, need)

    old, new = fit(0).save(tmp_path / "old"), fit(1).save(tmp_path / "new")
    assert LearnedEstimator.load(old).fitted
    (old / "weights.npz").write_bytes((new / "weights.npz").read_bytes())
    with pytest.raises(ConfigError, match="save the estimator again"):
        LearnedEstimator.load(old)
    meta = json.loads((new / "estimator.json").read_text())
    del meta["weights_blake2b"]  # an estimator saved before the checksum existed still loads
    (new / "estimator.json").write_text(json.dumps(meta))
    assert LearnedEstimator.load(new).fitted
