"""The Distiller driven synchronously on real data (scikit-learn's digits): it learns, the gate promotes only real
gains, a poisoned teacher never gets a student promoted, NaN batches are skipped, the holdout is never trained on;
waiting for samples never blocks replay or the gate from another thread; the configured replay ratio holds under
continuous fresh traffic; plus the gate's statistics and compression of the student."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

from tierswitch.distill import DistillConfig, Distiller, GateConfig, MemoryBuffer, Sample
from tierswitch.distill.compress import compress, module_bytes, prune_hidden
from tierswitch.distill.gate import judge
from tierswitch.distill.student import StudentSpec, build_student, student_tier
from tierswitch.errors import ConfigError

torch.set_num_threads(1)
SPEC = StudentSpec(64, (64,), 10, tuple(range(10)))


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    X_fit, X_rest, y_fit, y_rest = train_test_split(X, y, test_size=0.7, random_state=0, stratify=y)
    X_stream, X_test, _, y_test = train_test_split(X_rest, y_rest, test_size=0.3, random_state=0, stratify=y_rest)
    teacher = LogisticRegression(max_iter=2000, C=10).fit(X_fit, y_fit)
    return teacher, X_stream, teacher.predict_proba(X_stream).astype(np.float32), X_test, teacher.predict(X_test)


def _identity(x):
    return np.asarray(x, dtype=np.float32)


def _agreement(tier, X, labels) -> float:
    return float(np.mean([p.output for p in tier.predict(list(X))] == labels))


def _drain(d: Distiller, replay: int = 3) -> None:
    """What the background loop does, synchronously: fresh steps, each followed by replay steps."""
    while d.step():
        for _ in range(replay):
            d.replay_step()


def _config(**kw):
    base = {"eval_every": 10, "min_holdout": 60, "holdout_share": 0.15, "seed": 0}
    return DistillConfig(**{**base, **kw})


def test_student_learns_from_the_teacher_and_gets_promoted(digits):
    _, X_stream, probs, X_test, teacher_test = digits
    tier = student_tier(SPEC, _identity, seed=0)
    buf = MemoryBuffer()
    promoted = []
    d = Distiller(tier, buf, _config(), on_promote=promoted.append)
    before = _agreement(tier, X_test, teacher_test)
    buf.put_many(Sample(teacher=p, label=int(p.argmax()), x=x) for x, p in zip(X_stream, probs))
    _drain(d)
    after = _agreement(tier, X_test, teacher_test)
    assert after >= before + 0.5, (before, after)
    assert d.events and promoted == d.events
    first = d.events[0]
    assert first.agreement_after > first.agreement_before and first.version == "d1"
    assert tier.version == d.events[-1].version and tier.swaps == len(d.events)
    assert all(g.n <= d.counters["holdout"] for g in d.gates)
    assert d.counters["trained"] + d.counters["holdout"] == len(X_stream)


def test_the_holdout_is_never_trained_on(digits):
    _, X_stream, probs, _, _ = digits
    tier = student_tier(SPEC, _identity, seed=0)
    buf = MemoryBuffer(reservoir=10_000)
    d = Distiller(tier, buf, _config(holdout_share=0.3))
    buf.put_many(Sample(teacher=p, label=int(p.argmax()), x=x) for x, p in zip(X_stream, probs))
    _drain(d, replay=1)
    held = {x.tobytes() for x in d.holdout()[0]}
    replayable = {s.x.tobytes() for s in buf.reservoir.sample(10_000)}
    assert len(held) == d.counters["holdout"] > 100
    assert held.isdisjoint(replayable) and len(replayable) == d.counters["trained"]


def test_a_poisoned_teacher_never_gets_a_student_promoted(digits):
    _, X_stream, _, _, _ = digits
    rng = np.random.default_rng(0)
    tier = student_tier(SPEC, _identity, seed=0)
    buf = MemoryBuffer(capacity=20_000)
    d = Distiller(tier, buf, _config(eval_every=5))
    for _ in range(3):  # the same inputs, each time with fresh random labels
        labels = rng.integers(0, 10, len(X_stream))
        soft = rng.dirichlet(np.full(10, 0.3), len(X_stream)).astype(np.float32)
        soft[np.arange(len(labels)), labels] += 1.0
        soft /= soft.sum(axis=1, keepdims=True)
        buf.put_many(Sample(teacher=p, label=int(y), x=x) for x, p, y in zip(X_stream, soft, labels))
    _drain(d)
    judged = [g for g in d.gates if g.n >= 60]
    assert len(judged) > 40  # the gate really ran, on enough samples, many times
    assert d.events == [] and tier.version == "0" and tier.swaps == 0


def test_non_finite_samples_and_losses_are_skipped_and_never_published(digits):
    _, X_stream, probs, _, _ = digits
    tier = student_tier(SPEC, _identity, seed=0)
    buf = MemoryBuffer()
    d = Distiller(tier, buf, _config(holdout_share=0.0, eval_every=1, min_holdout=1))
    before = [p.detach().clone() for p in d.model.parameters()]
    # NaN in the teacher's answer: such samples are dropped one by one (the rest of the batch trains)
    buf.put_many(Sample(teacher=np.full(10, np.nan, dtype=np.float32), label=0, x=x) for x in X_stream[:40])
    # finite but huge inputs: the logits overflow, so the loss is not finite and the whole step is skipped
    buf.put_many(Sample(teacher=p, label=int(p.argmax()), x=np.full(64, 3e38, dtype=np.float32)) for p in probs[:24])
    assert d.step() == 32 and d.step() == 32 and d.step() == 0  # consumed (and acknowledged) all the same
    assert d.counters["nonfinite_samples"] == 40 and d.counters["skipped_nonfinite"] == 1
    assert d.counters["steps"] == 0 and all(torch.equal(a, b) for a, b in zip(before, d.model.parameters()))
    assert len(buf.reservoir) == 0  # nothing that blew up is kept for replay
    assert d.events == [] and tier.version == "0"


class _WatchedBuffer(MemoryBuffer):
    """A real MemoryBuffer that signals when a take starts waiting for samples and when it returns."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting = threading.Event()
        self.returned = threading.Event()

    def take(self, n, timeout_s=0.0, linger_s=0.0):
        if timeout_s > 0:
            self.waiting.set()
        try:
            return super().take(n, timeout_s, linger_s)
        finally:
            self.returned.set()


def test_replay_and_gate_from_another_thread_never_wait_for_a_take(digits):
    _, X_stream, probs, _, _ = digits
    samples = [Sample(teacher=p, label=int(p.argmax()), x=x) for x, p in zip(X_stream, probs)]
    buf = _WatchedBuffer()
    buf.reservoir.add(samples[:200])  # replayable history; nothing fresh waits
    d = Distiller(student_tier(SPEC, _identity, seed=0), buf, _config(holdout_share=0.0))
    consumed: list[int] = []
    stepper = threading.Thread(target=lambda: consumed.append(d.step(timeout_s=60.0)), daemon=True)
    stepper.start()
    assert buf.waiting.wait(10)  # step() is now inside buffer.take(), waiting on an empty buffer
    done, results = threading.Event(), []

    def other() -> None:
        results.append(d.replay_step())
        results.append(d.gate())
        done.set()

    threading.Thread(target=other, daemon=True).start()
    try:
        assert done.wait(10), "replay_step()/gate() waited for the take of step() in another thread"
        assert not buf.returned.is_set()  # ... which was still waiting for samples all along
        assert results[0] is True and d.counters["replay_steps"] == 1
        assert results[1].n == 0 and not results[1].promote  # the gate ran (on an empty holdout)
    finally:
        buf.put_many(samples[200:232])  # now the waiting step gets its batch
        stepper.join(30)
    assert consumed == [32] and d.counters["steps"] == 1 and d.counters["trained"] == 32


@pytest.mark.parametrize("ratio", [0.5, 2.0])
def test_the_replay_ratio_holds_under_continuous_fresh_traffic(digits, ratio):
    _, X_stream, probs, _, _ = digits
    buf = MemoryBuffer()
    buf.reservoir.add(Sample(teacher=p, label=int(p.argmax()), x=x) for x, p in zip(X_stream[:64], probs[:64]))
    buf.put_many(Sample(teacher=p, label=int(p.argmax()), x=x) for x, p in zip(X_stream[64:], probs[64:]))
    d = Distiller(student_tier(SPEC, _identity, seed=0), buf, _config(replay_ratio=ratio, idle_replay=4))
    # the loop of the background thread, stopped once the buffer is empty: at every turn fresh samples waited, so
    # the trainer never went idle and every replay-only step was taken under traffic
    d.run_until(lambda: len(buf) == 0)
    steps, replay = d.counters["steps"], d.counters["replay_steps"]
    assert d.counters["trained"] + d.counters["holdout"] == len(X_stream) - 64 and steps >= 20
    # the last fresh step's share is still owed when the loop stops; every earlier one was paid
    assert ratio * steps - ratio - 1 < replay <= ratio * steps, (steps, replay)


class _RecordedPauses(threading.Event):
    """The loop's stop event, recording each pause it is asked for instead of waiting (tests never sleep)."""

    def __init__(self) -> None:
        super().__init__()
        self.pauses: list[float] = []

    def wait(self, timeout=None):
        self.pauses.append(timeout)
        return self.is_set()


@pytest.mark.parametrize("max_busy, paced", [(0.25, True), (0.25, False), (1.0, True)])
def test_the_background_thread_pauses_after_each_step_in_proportion(digits, max_busy, paced):
    _, X_stream, probs, _, _ = digits
    buf = MemoryBuffer()
    buf.put_many(Sample(teacher=p, label=int(p.argmax()), x=x) for x, p in zip(X_stream[:640], probs[:640]))
    d = Distiller(student_tier(SPEC, _identity, seed=0), buf, _config(max_busy=max_busy, replay_ratio=0))
    d._stop = _RecordedPauses()
    d.run_until(lambda: len(buf) == 0, pace=paced)
    steps = d.counters["steps"] + d.counters["replay_steps"]
    assert steps >= 10
    if paced and max_busy < 1.0:
        # one pause per optimizer step, each 3x (= (1 - 0.25) / 0.25) the time its step took: never zero
        assert len(d._stop.pauses) == steps and all(p > 0 for p in d._stop.pauses)
    else:
        assert d._stop.pauses == []  # the distill worker (pace=False) and max_busy=1.0 never pause


class _FakeTimer:
    """The loop's busy-time clock: a tick per reading, so every optimizer step seems to take a few milliseconds."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 0.001
        return self.now


class _SlowToFill(MemoryBuffer):
    """A real MemoryBuffer whose every take first waits 10 s (of the fake clock) for traffic to trickle in."""

    def __init__(self, timer: _FakeTimer) -> None:
        super().__init__()
        self.timer = timer

    def take(self, n, timeout_s=0.0, linger_s=0.0):
        self.timer.now += 10.0
        return super().take(n, timeout_s, linger_s)


def test_pacing_counts_the_steps_busy_time_not_the_wait_for_samples(digits):
    _, X_stream, probs, _, _ = digits
    timer = _FakeTimer()
    buf = _SlowToFill(timer)
    buf.put_many(Sample(teacher=p, label=int(p.argmax()), x=x) for x, p in zip(X_stream[:320], probs[:320]))
    d = Distiller(student_tier(SPEC, _identity, seed=0), buf, _config(max_busy=0.25, replay_ratio=0))
    d._stop, d._timer = _RecordedPauses(), timer
    d.run_until(lambda: len(buf) == 0, pace=True)
    assert d.counters["steps"] >= 5 and len(d._stop.pauses) == d.counters["steps"]
    # 3x a few ticks of compute each; waiting 10 s for samples would have asked for 30 s pauses
    assert all(0 < p < 0.1 for p in d._stop.pauses), d._stop.pauses


def test_samples_the_student_cannot_take_are_dropped_and_never_poison_the_holdout(digits):
    _, X_stream, probs, _, _ = digits
    tier = student_tier(SPEC, _identity, seed=0)
    buf = MemoryBuffer()
    d = Distiller(tier, buf, _config(holdout_share=0.5, eval_every=1, min_holdout=1))
    good = [Sample(teacher=p, label=int(p.argmax()), x=x) for x, p in zip(X_stream[:300], probs[:300])]
    bad = [Sample(teacher=probs[0], label=0, x=np.zeros(65, dtype=np.float32)),  # one feature too many
           Sample(teacher=np.full(3, 1 / 3, dtype=np.float32), label=0, x=X_stream[0]),  # 3 classes, not 10
           Sample(teacher=probs[0], label=0, raw="not an image")]  # student_input fails on the payload
    for i in range(0, 300, 30):  # a bad one in every batch
        buf.put_many(good[i:i + 30] + [bad[(i // 30) % 3]])
    while d.step():  # never raises: each bad sample is dropped alone, its batch trains
        pass
    assert d.counters["invalid_samples"] == 10 and d.counters["errors"] == 0
    assert d.counters["trained"] + d.counters["holdout"] == 300 and d.counters["steps"] >= 10
    x, y = d.holdout()
    assert x.shape == (d.counters["holdout"], 64) and len(y) == len(x)  # only real 64-feature samples held out
    assert d.gate().n == len(y)  # ... so the gate keeps working
    assert all(s.x is not None and s.x.shape == (64,) for s in buf.reservoir.sample(10_000))


def test_gate_statistics():
    cfg = GateConfig(margin=0.01, z=2.5, min_samples=100)
    labels = np.arange(400) % 10
    serving = np.zeros(400, bool)
    serving[:200] = True
    clear_gain = serving.copy()
    clear_gain[200:260] = True  # b = 60, c = 0
    assert judge(1, clear_gain, serving, labels, cfg).promote
    noisy = serving.copy()
    noisy[200:215] = True  # b = 15 ...
    noisy[:8] = False  # ... c = 8: a gain of 7 items, under 2.5 * sqrt(23)
    result = judge(2, noisy, serving, labels, cfg)
    assert not result.promote and "not significant" in result.reason
    small = judge(3, clear_gain[:50], serving[:50], labels[:50], cfg)
    assert not small.promote and "holdout has 50" in small.reason
    # a candidate no better than always answering the most frequent label is never promoted
    skewed = np.where(np.arange(400) < 300, 0, np.arange(400) % 10)
    weak = skewed == 0  # right exactly where "always 0" is right
    assert not judge(4, weak, np.zeros(400, bool), skewed, cfg).promote
    with pytest.raises(ConfigError):
        GateConfig(min_samples=0)


def test_config_validation_names_the_field():
    with pytest.raises(ConfigError) as info:
        DistillConfig.from_dict({"batch_size": 32, "learning_rate": 0.1})
    assert info.value.field == "distill.learning_rate"
    with pytest.raises(ConfigError) as info:
        DistillConfig(replay_share=0.95)
    assert info.value.field == "distill.replay_share"
    for bad in (0, -0.1, 1.5, float("nan"), True, "0.5"):
        with pytest.raises(ConfigError) as info:
            DistillConfig(max_busy=bad)
        assert info.value.field == "distill.max_busy"
    for bad in (-0.5, 101, float("nan"), True, "1"):
        with pytest.raises(ConfigError) as info:
            DistillConfig(replay_ratio=bad)
        assert info.value.field == "distill.replay_ratio" and "replay steps per fresh step" in str(info.value)
    assert DistillConfig(replay_ratio=0).replay_ratio == 0
    assert DistillConfig.from_dict(DistillConfig(lr=0.01).to_dict()) == DistillConfig(lr=0.01)


def test_compression_keeps_agreement_and_reports_each_variant(digits):
    _, X_stream, probs, X_test, teacher_test = digits
    tier = student_tier(StudentSpec(64, (128,), 10, tuple(range(10))), _identity, seed=0)
    buf = MemoryBuffer()
    d = Distiller(tier, buf, _config())
    buf.put_many(Sample(teacher=p, label=int(p.argmax()), x=x) for x, p in zip(X_stream, probs))
    _drain(d)
    model, spec = d.model.eval(), d.spec
    result = compress(model, spec, X_test, teacher_test, int8=True, prune=0.5, tolerance=0.02, latency_repeats=5)
    by_name = {v.name: v for v in result.variants}
    assert set(by_name) == {"float", "pruned50%", "float+int8", "pruned50%+int8"}
    assert by_name["float+int8"].size_bytes < by_name["float"].size_bytes / 3
    assert by_name["pruned50%"].size_bytes < by_name["float"].size_bytes * 0.55
    chosen = by_name[result.chosen]
    assert chosen.accepted and chosen.agreement >= by_name["float"].agreement - 0.02
    assert chosen.size_bytes == min(v.size_bytes for v in result.variants if v.accepted)
    # a variant outside the tolerance is never chosen
    strict = compress(model, spec, X_test, teacher_test, prune=0.95, tolerance=0.0, latency_repeats=1)
    pruned = next(v for v in strict.variants if v.name.startswith("pruned"))
    assert (strict.chosen == "float") == (not pruned.accepted)


def test_structured_pruning_drops_the_weakest_units_exactly():
    spec = StudentSpec(3, (4,), 2)
    model = build_student(spec)
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, 0, 0], [0, 0.1, 0], [0, 0, 2.0], [0, 0.01, 0]]))
        model[0].bias.zero_()
        model[2].weight.fill_(1.0)
    pruned, pspec = prune_hidden(model, spec, 0.5)
    assert pspec.hidden == (2,) and module_bytes(pruned) < module_bytes(model)
    assert torch.equal(pruned[0].weight, torch.tensor([[1.0, 0, 0], [0, 0, 2.0]]))  # units 0 and 2 kept, in order
    x = torch.tensor([[1.0, 0.0, 1.0]])
    assert torch.allclose(pruned(x), model(x))  # the dropped units were silent on this input
