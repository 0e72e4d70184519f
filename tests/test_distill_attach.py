"""Online distillation v2: the student's featuriser and numpy hot path, the worker-process trainer behind
``distill_into``, and the wiring checks (labels, cost, fields). Real models (digits, logistic regression), a real
Router, a real worker process (stopped and joined by the test)."""

from __future__ import annotations

import logging
import multiprocessing as mp

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

from tierswitch.distill import DistillConfig
from tierswitch.distill.attach import distill_into
from tierswitch.distill.buffer import PriorityBuffer
from tierswitch.distill.features import DenseFeatures, HashedTextFeatures, densify, features_from_dict
from tierswitch.distill.forward import NumpyMLP
from tierswitch.distill.process import ProcessTrainer
from tierswitch.distill.sample import Sample
from tierswitch.distill.spec import StudentSpec
from tierswitch.distill.student import build_student, student_tier
from tierswitch.errors import ConfigError, LabelSetError
from tierswitch.policies.cascade import Cascade
from tierswitch.router import Router
from tierswitch.tiers.sklearn import SklearnTier


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits(return_X_y=True)
    x = x.astype(np.float32)
    base = LogisticRegression(max_iter=200).fit(x[:60] / 16.0, y[:60])  # weak: 60 images
    full = LogisticRegression(max_iter=2000, C=10).fit(x[:500] / 16.0, y[:500])
    return x, y, base, full


def _router(digits, classes=None, cost=2.0):
    x, y, base, full = digits
    spec = StudentSpec(64, (64,), 10, tuple(range(10)) if classes is None else classes, DenseFeatures(64, 1 / 16))
    scale = lambda items: np.stack(items) / 16.0  # noqa: E731
    tiers = [SklearnTier("base", base, preprocess=scale, cost=1.0),
             student_tier(spec, cost=cost),
             SklearnTier("full", full, preprocess=scale, cost=20.0)]
    return Router(tiers, Cascade({"base": 0.9, "distilled": 0.8}), cache=None)


def test_hashed_text_features_are_sparse_stable_and_normalised():
    f = HashedTextFeatures()
    cols, vals = f.sparse_one("Where is my card? It has not arrived")
    assert cols.dtype == np.int64 and 50 < len(cols) < 400 and cols.max() < f.dim
    assert abs(float(vals @ vals) - 1.0) < 1e-5  # each occurrence 1/sqrt(n): unit norm before collisions
    again = HashedTextFeatures(**{k: v for k, v in f.to_dict().items() if k != "kind"}).sparse_one(
        "Where is my card? It has not arrived")
    assert np.array_equal(cols, again[0])  # no salted hash: the same columns in every process
    assert cols[:5].tolist() == [29, 60, 184, 22, 162]  # pinned: a fleet's workers and routers must agree
    assert len(f.sparse_one("")[0]) == 0
    assert features_from_dict(f.to_dict()) == f


@pytest.mark.parametrize("bad, field", [
    ({"kind": "hashed_text", "dim": 0}, "student.features.dim"),
    ({"kind": "hashed_text", "chars": [4, 2]}, "student.features.chars"),
    ({"kind": "hashed_text", "words": 1.5}, "student.features.words"),
    ({"kind": "hashed_text", "ngrams": 3}, "student.features.ngrams"),
    ({"kind": "tfidf"}, "student.features.kind"),
    ({"kind": "dense"}, "student.features.dim"),
])
def test_feature_spec_errors_name_the_field(bad, field):
    with pytest.raises(ConfigError) as info:
        features_from_dict(bad)
    assert info.value.field == field


@pytest.mark.parametrize("kwargs, field", [
    ({"hidden": "64"}, "student.hidden"),
    ({"hidden": (0,)}, "student.hidden[0]"),
    ({"input_dim": -1}, "student.input_dim"),
    ({"classes": (0, 1)}, "student.classes"),
    ({"features": {"kind": "dense", "dim": 32}}, "student.input_dim"),
])
def test_student_spec_errors_name_the_field(kwargs, field):
    args = {"input_dim": 64, "hidden": (8,), "n_classes": 3, "classes": None, **kwargs}
    with pytest.raises(ConfigError) as info:
        StudentSpec(**args)
    assert info.value.field == field


def test_spec_takes_numpy_labels_and_numbers_and_round_trips():
    spec = StudentSpec(np.int64(64), np.array([16]), 3, np.array(["a", "b", "c"]), {"kind": "dense", "dim": 64})
    assert spec.hidden == (16,) and spec.classes == ("a", "b", "c") and type(spec.classes[0]) is str
    assert StudentSpec.from_json(spec.to_json()) == spec
    text = StudentSpec.for_text(np.arange(5))
    assert text.classes == (0, 1, 2, 3, 4) and StudentSpec.from_json(text.to_json()) == text


def test_numpy_forward_matches_torch_dense_and_sparse():
    spec = StudentSpec.for_text(list("abcd"), hidden=(32, 16), features={"kind": "hashed_text", "dim": 512})
    module = build_student(spec, seed=3).eval()
    fwd = NumpyMLP.from_module(module)
    rows = [spec.features.sparse_one(t) for t in ("hello there", "my card is lost", "x")]
    dense = densify(rows, 512)
    with torch.inference_mode():
        expected = module(torch.from_numpy(dense)).numpy()
    assert np.allclose(fwd.logits(dense), expected, atol=1e-5)
    assert np.allclose(fwd.logits_sparse(rows), expected, atol=1e-5)


def test_student_tier_serves_float_weights_in_numpy_and_int8_in_torch():
    from tierswitch.distill.compress import quantize_int8

    spec = StudentSpec.for_text(["neg", "pos"], hidden=(16,), features={"kind": "hashed_text", "dim": 256})
    tier = student_tier(spec, cost=1.0)
    assert tier._numpy[1] is not None  # the hot path is numpy
    float_out = tier.predict(["good", "bad film"])
    module = tier.module
    with torch.inference_mode():
        logits = module(torch.from_numpy(densify([spec.features.sparse_one(t) for t in ("good", "bad film")], 256)))
    assert np.allclose([p.probs for p in float_out], torch.softmax(logits, 1).numpy(), atol=1e-5)
    tier.swap_student(quantize_int8(module), spec, "q")
    assert tier._numpy[1] is None and [p.output for p in tier.predict(["good"])][0] in ("neg", "pos")


def test_priority_buffer_trains_disagreements_first_and_evicts_confident_ones():
    def s(p):
        return Sample(teacher=np.array([0.5, 0.5], np.float32), label=0, x=np.zeros(2, np.float32),
                      meta={"p": p, "t": 0.0})

    buf = PriorityBuffer(capacity=6, backlog=3)
    buf.put_many([s(0.0), s(1.4), s(0.1), s(1.2), s(0.05)])
    assert sorted(x.meta["p"] for x in buf.take(2).samples) == [1.2, 1.4]  # backlog of 5 > 3: priority first
    buf.put_many([s(0.9), s(0.8), s(0.7), s(0.6)])  # 7 > capacity 6: the least useful go
    assert buf.dropped == 1 and 0.0 not in [x.meta["p"] for x in buf._fresh]
    assert [x.meta["p"] for x in buf.take(10).samples] and buf.lag_s() == 0.0


def test_wiring_errors_are_named(digits):
    router = _router(digits)
    with pytest.raises(ConfigError) as info:
        distill_into(router, "nope", start=False)
    assert info.value.field == "distill.student"
    with pytest.raises(ConfigError) as info:
        distill_into(router, "base", start=False)
    assert info.value.field == "distill.student"
    with pytest.raises(ConfigError) as info:
        distill_into(router, worker="gpu", start=False)
    assert info.value.field == "distill.worker"
    with pytest.raises(LabelSetError, match="label"):
        distill_into(_router(digits, classes=tuple(str(i) for i in range(10))), start=False)
    with pytest.raises(LabelSetError, match="order"):
        distill_into(_router(digits, classes=tuple(range(9, -1, -1))), start=False)
    uncosted = _router(digits)
    uncosted.tiers["distilled"].cost_set = False
    with pytest.raises(ConfigError) as info:
        distill_into(uncosted, start=False)
    assert info.value.field == "distill.cost"


def test_student_tier_without_a_cost_is_marked_and_cost_can_be_measured(digits):
    x = digits[0]
    router = _router(digits)
    student = router.tiers["distilled"]
    spec = student.spec
    assert student_tier(spec).cost_set is False and student.cost_set is True
    run = distill_into(router, cost="measured", calibration=list(x[:50]), worker="thread", start=False)
    assert 0.0 < student.cost_model.per_call < 200.0  # full's 20 x the measured latency ratio, never a silent 0
    run.detach()


def test_thread_worker_trains_through_distill_into(digits):
    x, _, _, _ = digits
    router = _router(digits)
    run = distill_into(router, worker="thread", config=DistillConfig(seed=1, max_busy=1.0))
    try:
        for img in x[500:1300]:
            router(img)
        assert run.finish(60)
        s = run.summary()
        assert s["promotions"] >= 1 and s["trainer"]["trained"] > 200 and s["worker"] == "thread"
    finally:
        run.detach()
    assert run.feeder not in router.hooks  # detached: later requests never reach it
    router(x[0])
    assert run.summary()["feeder"]["dropped"] == 0


@pytest.mark.slow
def test_process_worker_learns_beside_a_tight_serving_loop_and_stops_cleanly(digits, caplog):
    """Free-running traffic (no pauses): the worker process trains while the loop serves, the promoted weights
    come back verified and are served; detach stops the process (joined, no orphan)."""
    x, _, _, _ = digits
    router = _router(digits)
    run = distill_into(router, "distilled", teacher="full")
    trainer = run.trainer
    try:
        assert isinstance(trainer, ProcessTrainer) and trainer.alive
        served = []
        for img in x[500:1797]:
            served.append(router(img).tier)
        assert run.finish(120)
        s = run.summary()
        assert s["promotions"] >= 1 and s["version"].startswith("d")
        assert s["trainer"]["trained"] + s["trainer"]["holdout"] == s["feeder"]["samples"] == trainer.counters["sent"]
        assert s["trainer"]["dropped"] == 0 and set(s) >= {"waiting", "lag_s", "samples_per_s"}
        assert router.tiers["distilled"]._numpy[1] is not None  # served in numpy after the swap
        metrics = run.metrics()
        assert metrics["tierswitch_distill_promotions_total"] >= 1
        # a tampered message is refused and the tier keeps serving what it had
        version = router.tiers["distilled"].version
        with caplog.at_level(logging.ERROR, logger="tierswitch.distill"):
            trainer._apply({"version": "evil", "blob": b"\x00" * 16, "sha256": "0" * 64, "spec": "{}", "event": {}})
        assert "evil" in trainer.rejected and router.tiers["distilled"].version == version
    finally:
        proc = trainer._proc
        run.detach()
    assert proc is not None and not proc.is_alive() and proc.exitcode is not None
    assert not [p for p in mp.active_children() if p.name.startswith("tierswitch-distill")]
    assert not trainer.alive


def test_backlog_warning_fires_when_the_backlog_keeps_growing(digits, caplog):
    router = _router(digits)
    trainer = ProcessTrainer(router.tiers["distilled"], warn_after=3)
    with caplog.at_level(logging.WARNING, logger="tierswitch.distill"):
        for waiting in (100, 300, 600, 1000, 1500):  # what the worker reports, one report after another
            trainer._on_stats({"waiting": waiting, "received": 0, "lag_s": 2.0, "samples_per_s": 50.0})
    assert trainer.backlog_warning and "cannot keep up" in caplog.text
    assert trainer.summary()["waiting"] == 1500
