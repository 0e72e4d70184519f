"""Online distillation through a real Router on real data (scikit-learn's digits).

The headline claim: a cheap base, a strong full model and an untrained student behind a Cascade; 3,000 inputs stream
through while a background Distiller learns from the full tier's answers (and shadow samples). The student's
agreement with the teacher on held-out inputs rises by >= 25 points, its accuracy ends >= 85% of the teacher's, and
the full tier's share of the last fifth of the stream is at most half its share of the first fifth. Inputs that
trained the base and full models, the streamed inputs, and the scored inputs are disjoint.
"""

from __future__ import annotations

import csv
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.calibration import CalibratedClassifierCV
from sklearn.datasets import load_digits
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.model_selection import train_test_split
from sklearn.naive_bayes import MultinomialNB
from sklearn.pipeline import make_pipeline
from sklearn.svm import SVC

from tierswitch import CallableTier, Cascade, Fixed, Router, SklearnTier
from tierswitch.distill import DistillConfig, Distiller, DistillFeeder, MemoryBuffer, Sample
from tierswitch.distill.student import StudentSpec, student_tier
from tierswitch.errors import ConfigError, DistillError
from tierswitch.tiers.base import Capabilities

torch.set_num_threads(1)
SPEC = StudentSpec(64, (128,), 10, tuple(range(10)))
BANKING = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "banking77"


def _pool_4x4(batch) -> np.ndarray:
    return np.stack(batch).reshape(-1, 4, 2, 4, 2).mean(axis=(2, 4)).reshape(-1, 16)


def _features(x) -> np.ndarray:
    """The student's own preprocessing: the 64 pixels, already scaled to [0, 1]."""
    return np.asarray(x, dtype=np.float32).reshape(64)


@pytest.fixture(scope="module")
def world():
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    X_rest, X_test, y_rest, y_test = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
    X_fit, X_pool, y_fit, _ = train_test_split(X_rest, y_rest, test_size=0.5, random_state=0, stratify=y_rest)
    base = LogisticRegression(max_iter=2000, C=5).fit(_pool_4x4(list(X_fit)), y_fit)
    full = CalibratedClassifierCV(SVC(C=10, gamma=0.02, random_state=0), cv=5, ensemble=False).fit(X_fit, y_fit)
    rng = np.random.default_rng(0)

    def augment(img: np.ndarray) -> np.ndarray:  # a new, unseen input: shifted by up to a pixel, with noise
        dx, dy = rng.integers(-1, 2, size=2)
        shifted = np.roll(np.roll(img.reshape(8, 8), dx, axis=1), dy, axis=0).reshape(64)
        return np.clip(shifted + rng.normal(0, 0.05, 64), 0, 1).astype(np.float32)

    stream = [augment(X_pool[i]) for i in rng.integers(0, len(X_pool), 3000)]
    return base, full, stream, X_test.astype(np.float32), y_test


def _tiers(base, full, student):
    return [SklearnTier("base", base, preprocess=_pool_4x4, cost=1.0), student,
            SklearnTier("full", full, preprocess=np.stack, cost=10.0)]


@pytest.mark.slow
def test_the_student_takes_over_while_serving(world):
    base, full, stream, X_test, y_test = world
    student = student_tier(SPEC, _features, cost=2.0, num_threads=1)
    router = Router(_tiers(base, full, student), Cascade({"base": 0.9, "distilled": 0.75}))
    buffer = MemoryBuffer()
    config = DistillConfig(eval_every=25, min_holdout=100, holdout_share=0.15, idle_replay=4, take_timeout_s=0.05)
    distiller = Distiller(student, buffer, config)
    feeder = DistillFeeder(buffer, _features, shadow_rate=0.1, seed=0).attach(router)
    teacher_test = full.predict(X_test)

    def agreement() -> tuple[float, float]:
        out = np.array([p.output for p in student.predict(list(X_test))])
        return float(np.mean(out == teacher_test)), float(np.mean(out == y_test))

    agree_before, _ = agreement()
    served: list[str] = []
    distiller.start()
    try:
        for start in range(0, len(stream), 100):  # traffic in bursts; the trainer catches up between them
            served += [router(x, modality="tabular").tier for x in stream[start:start + 100]]
            assert feeder.flush(60) and distiller.wait_idle(60)
    finally:
        distiller.stop()
        feeder.stop()
    agree_after, student_acc = agreement()
    teacher_acc = float(np.mean(teacher_test == y_test))
    fifth = len(served) // 5
    full_first = served[:fifth].count("full") / fifth
    full_last = served[-fifth:].count("full") / fifth

    assert agree_after >= agree_before + 0.25, (agree_before, agree_after)
    assert student_acc >= 0.85 * teacher_acc, (student_acc, teacher_acc)
    assert full_last <= 0.5 * full_first, (full_first, full_last)
    print(f"agreement {agree_before:.3f} -> {agree_after:.3f}; accuracy {student_acc:.3f} vs teacher "
          f"{teacher_acc:.3f}; full share {full_first:.3f} -> {full_last:.3f}; promotions {len(distiller.events)}")
    assert distiller.events and student.version == distiller.events[-1].version
    assert feeder.counters["dropped"] == 0 and feeder.counters["shadow"] > 0
    assert "distilled" in router.agreement  # live agreement measured from shadow samples
    assert distiller.counters["errors"] == 0 and router.stats.snapshot().get("hook_errors", 0) == 0


def test_a_promotion_makes_cached_answers_of_the_old_student_stop_matching(world):
    base, full, stream, X_test, _ = world
    student = student_tier(SPEC, _features)
    router = Router([student, SklearnTier("full", full, preprocess=np.stack)], Fixed("distilled"))
    x = X_test[0]
    first = router(x, modality="tabular")
    assert router(x, modality="tabular").cached and first.tier_version == "0"
    buffer = MemoryBuffer()
    distiller = Distiller(student, buffer, DistillConfig(eval_every=5, min_holdout=60, holdout_share=0.3))
    probs = full.predict_proba(np.stack(stream[:1500]))
    buffer.put_many(Sample(teacher=p.astype(np.float32), label=int(p.argmax()), x=s) for s, p in
                    zip(stream[:1500], probs))
    while distiller.step():
        distiller.replay_step()
    assert distiller.events, [g.reason for g in distiller.gates][-3:]
    after = router(x, modality="tabular")
    assert not after.cached and after.tier_version == student.version != "0"


class _StuckBuffer(MemoryBuffer):
    """A buffer whose writes hang until released (a stalled backend)."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def put_many(self, samples):
        self.release.wait(60)
        return super().put_many(samples)


class _BrokenBuffer(MemoryBuffer):
    def put_many(self, samples):
        raise ConnectionError("backend down")


def _full_only_router(full):
    return Router([SklearnTier("full", full, preprocess=np.stack)], Fixed("full"), cache=None)


def test_the_hand_off_queue_drops_the_oldest_and_never_blocks_a_request(world):
    _, full, stream, _, _ = world
    router = _full_only_router(full)
    buffer = _StuckBuffer()
    feeder = DistillFeeder(buffer, _features, queue_size=5, max_batch=1).attach(router)
    try:
        results = [router(x, modality="tabular") for x in stream[:50]]  # returns although the buffer is stuck
        assert len(results) == 50
        assert feeder.counters["queued"] == 50
        # at most one item is in the feeder's hands, five wait in the queue: the rest were dropped, oldest first
        assert 50 - 5 - 1 <= feeder.counters["dropped"] <= 50 - 5
    finally:
        buffer.release.set()
        assert feeder.flush(60)
        feeder.stop()
    assert len(buffer) == 50 - feeder.counters["dropped"]
    newest = buffer.take(100).samples[-1]
    assert np.array_equal(newest.x, stream[49])  # the newest survived


def test_a_failing_buffer_never_fails_a_request(world):
    _, full, stream, _, _ = world
    router = _full_only_router(full)
    feeder = DistillFeeder(_BrokenBuffer(), _features).attach(router)
    results = [router(x, modality="tabular") for x in stream[:20]]
    assert feeder.flush(60)
    feeder.stop()
    assert len(results) == 20 and feeder.counters["errors"] >= 1 and feeder.counters["samples"] == 0


class _GatedBuffer(MemoryBuffer):
    """A buffer whose first write waits until released, signalling when the feeder thread is inside it."""

    def __init__(self) -> None:
        super().__init__()
        self.entered, self.release = threading.Event(), threading.Event()

    def put_many(self, samples):
        self.entered.set()
        self.release.wait(60)
        return super().put_many(samples)


def test_one_unusable_item_costs_only_itself_and_a_stopped_feeder_stays_stopped():
    router = Router([CallableTier("full", lambda x: ("pos", np.array([0.3, 0.7])))], Fixed("full"), cache=None)
    buffer = _GatedBuffer()
    feeder = DistillFeeder(buffer, lambda x: np.full(3, len(x), dtype=np.float32)).attach(router)
    router("first")
    assert buffer.entered.wait(30)  # the feeder thread holds "first"; the next three queue up as one chunk
    for x, truth in (("a", 1), ("bb", "refund"), ("ccc", 0)):  # "refund" is no class index: that item is unusable
        router(x, truth=truth)
    buffer.release.set()
    assert feeder.flush(60)
    assert feeder.counters["samples"] == 3 and feeder.counters["errors"] == 1  # not the whole chunk lost
    assert sorted(s.truth for s in buffer.take(10).samples if s.truth is not None) == [0, 1]
    feeder.stop()
    router("after stop")  # counted, and no thread is started for it
    assert feeder.counters["stopped"] == 1 and feeder.counters["dropped"] == 0 and feeder._thread is None
    with pytest.raises(DistillError, match="stopped for good"):
        feeder.start()
    with pytest.raises(ConfigError) as info:
        DistillFeeder(MemoryBuffer(), max_batch=0)  # would spin the feeder thread without ever taking an item
    assert info.value.field == "distill.max_batch"


def test_a_failing_shadow_call_costs_only_the_shadow_samples():
    def full(x):
        if x.startswith("easy"):
            raise RuntimeError("the full tier is down for shadow traffic")
        return "F", np.array([0.1, 0.9])

    base = CallableTier("base", lambda x: ("B", np.array([0.9, 0.1]) if x.startswith("easy") else np.array([0.6, 0.4])))
    router = Router([base, CallableTier("full", full)], Cascade({"base": 0.8}), cache=None)  # "hard" escalates
    buffer = _GatedBuffer()
    feeder = DistillFeeder(buffer, lambda x: np.full(3, len(x), dtype=np.float32), shadow_rate=1.0).attach(router)
    assert router("hard 0").tier == "full"
    assert buffer.entered.wait(30)  # the feeder thread holds "hard 0"; the next two queue up as one chunk
    assert router("easy 1").tier == "base" and router("hard 2").tier == "full"
    buffer.release.set()
    assert feeder.flush(60)
    feeder.stop()
    assert feeder.counters["errors"] == 1 and feeder.counters["shadow"] == 0
    assert [float(s.x[0]) for s in buffer.take(10).samples] == [6.0, 6.0]  # both "hard" answers (len 6) kept


def _shadow_run(base, full, stream, seed):
    student = student_tier(SPEC, _features)
    router = Router(_tiers(base, full, student), Cascade({"base": 0.0}), cache=None)  # base answers everything
    buffer = MemoryBuffer()
    feeder = DistillFeeder(buffer, _features, shadow_rate=0.3, seed=seed).attach(router)
    for x in stream[:300]:
        assert router(x, modality="tabular").tier == "base"
    assert feeder.flush(60)
    feeder.stop()
    return router, buffer, feeder


def test_shadow_sampling_measures_live_agreement_and_makes_samples(world):
    base, full, stream, _, _ = world
    router, buffer, feeder = _shadow_run(base, full, stream, seed=1)
    n = feeder.counters["shadow"]
    assert 60 <= n <= 120  # about 30% of 300
    assert router.live_agreement.samples("base") == n
    samples = buffer.take(1000).samples
    assert len(samples) == n and all(s.meta["src"] == "shadow" for s in samples)
    # each shadow sample carries the full tier's answer, and agreement counts where base matched it
    truth = full.predict(np.stack(stream[:300]))
    base_out = base.predict(_pool_4x4(stream[:300]))
    assert feeder.counters["agreed"] <= n and 0.5 < router.agreement["base"] <= 1.0
    assert np.mean(base_out == truth) == pytest.approx(router.agreement["base"], abs=0.15)
    again = _shadow_run(base, full, stream, seed=1)[2]
    assert again.counters["shadow"] == n  # seeded: the same requests are shadowed


def _banking(name: str) -> tuple[list[str], list[str]]:
    with open(BANKING / name, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [r["text"] for r in rows], [r["category"] for r in rows]


def test_a_mixed_modality_router_never_shadows_or_feeds_what_the_full_tier_cannot_accept(world):
    """Text tiers (banking77) and tabular tiers (digits) behind one router, one feeder per family with shadow rate 1:
    each feeder shadows and feeds only its own family's inputs (and no text longer than its full tier's cap)."""
    base, full, stream, _, _ = world
    x_text, y_text = _banking("train.csv")
    text_base = make_pipeline(CountVectorizer(max_features=400), MultinomialNB()).fit(x_text, y_text)
    text_full = make_pipeline(TfidfVectorizer(sublinear_tf=True, min_df=2), SGDClassifier(
        loss="log_loss", alpha=1e-5, max_iter=10, tol=None, random_state=0)).fit(x_text, y_text)
    text, tab, cap = Capabilities.of("text"), Capabilities.of("tabular"), 12  # the text full tier's token cap
    tiers = [SklearnTier("base-text", text_base, capabilities=text, cost=1.0),
             SklearnTier("base-digits", base, preprocess=_pool_4x4, capabilities=tab, cost=1.0),
             SklearnTier("full-text", text_full, capabilities=Capabilities.of("text", max_length=cap), cost=10.0),
             SklearnTier("full-digits", full, preprocess=np.stack, capabilities=tab, cost=10.0)]
    router = Router(tiers, Cascade({"base-text": 0.5, "base-digits": 0.9}), cache=None)
    feeders = {name: DistillFeeder(MemoryBuffer(), student_input, full_tier=f"full-{name}", shadow_rate=1.0)
               .attach(router) for name, student_input in (("digits", _features), ("text", None))}
    records = []
    router.add_hook(records.append)
    questions = _banking("test.csv")[0][::10][:150]
    for x, q in zip(stream[:150], questions):  # interleaved traffic
        router(x, modality="tabular")
        router(q)
    for feeder in feeders.values():
        assert feeder.flush(60)
        feeder.stop()
    texts = [r for r in records if r.request.modality == "text"]
    fits = [r for r in texts if r.features.length <= cap]
    assert len(texts) == 150 and 20 <= len(fits) <= 130  # both sides of the cap are exercised
    digits, words = feeders["digits"], feeders["text"]
    # every tabular request gives a sample (full-tier answer or shadow); no text ever reached the digits model
    assert digits.counters["samples"] == 150 and digits.counters["unaccepted"] == len(texts)
    assert all(s.x.shape == (64,) for s in digits.buffer.take(1000).samples)
    # the text feeder: only texts within the cap; tabular inputs (answered by a digits tier, even the full one)
    # and over-long texts are counted, never sent to the text model
    assert words.counters["samples"] == len(fits) and words.counters["unaccepted"] == 150 + len(texts) - len(fits)
    fed = words.buffer.take(1000).samples
    assert {s.raw for s in fed} == {r.request.payload for r in fits} and all(isinstance(s.raw, str) for s in fed)
    for feeder in feeders.values():
        assert feeder.counters["errors"] == 0 and feeder.counters["dropped"] == 0
    # live agreement: each base tier measured against its own family's full tier only
    assert router.live_agreement.samples("base-digits") == digits.counters["shadow"] > 0
    assert router.live_agreement.samples("base-text") == words.counters["shadow"] > 0
    assert router.stats.snapshot().get("hook_errors", 0) == 0
    with pytest.raises(ConfigError, match="full-image"):
        DistillFeeder(MemoryBuffer(), full_tier="full-image").attach(router)
