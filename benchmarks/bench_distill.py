"""Online distillation: serving latency with the trainer running vs idle, training throughput, and the student's
compressed variants (INT8, pruned) against the float one; plus the full-size stream through a router.

    python -m pytest benchmarks/bench_distill.py --benchmark-only --benchmark-group-by=group -s

Everything is seeded; models train outside the timed parts. Serving and training each get one torch thread (the
machine has two cores). p99 and ratios are in each benchmark's ``extra_info`` (``--benchmark-json``) and printed.
"""

from __future__ import annotations

import sys
import threading
import time

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

from tierswitch.distill import DistillConfig, Distiller, MemoryBuffer, Sample
from tierswitch.distill.compress import module_bytes, prune_hidden, quantize_int8
from tierswitch.distill.loss import distill_loss
from tierswitch.distill.student import StudentSpec, build_student, student_tier

SPEC = StudentSpec(64, (128,), 10, tuple(range(10)))
ROUNDS = 5000


def _identity(x):
    return np.asarray(x, dtype=np.float32)


@pytest.fixture(scope="module")
def digits():
    torch.set_num_threads(1)
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    X_fit, X_rest, y_fit, _ = train_test_split(X, y, test_size=0.6, random_state=0, stratify=y)
    X_stream, X_test = train_test_split(X_rest, test_size=0.4, random_state=0)
    teacher = LogisticRegression(max_iter=2000, C=10).fit(X_fit, y_fit)
    probs = teacher.predict_proba(X_stream).astype(np.float32)
    samples = [Sample(teacher=p, label=int(p.argmax()), x=x) for x, p in zip(X_stream, probs)]
    return samples, X_test, teacher.predict(X_test)


@pytest.fixture(scope="module")
def trained(digits):
    """A student distilled (synchronously) from the teacher: what the tier serves in the latency benchmarks."""
    samples, _, _ = digits
    tier = student_tier(SPEC, _identity, seed=0, num_threads=1)
    buf = MemoryBuffer()
    d = Distiller(tier, buf, DistillConfig(eval_every=10, min_holdout=60, holdout_share=0.15))
    for _ in range(5):
        buf.put_many(samples)
        while d.step():
            d.replay_step()
    return d.model.eval()


def _p99(benchmark) -> float:
    data = sorted(benchmark.stats.stats.data)
    return data[int(0.99 * (len(data) - 1))]


# -- serving with the trainer running vs idle --------------------------------------------------------------------------
@pytest.mark.parametrize("trainer", ["idle", "running", "running-busy0.5", "running-busy0.25", "running-switch0.5ms"])
def test_serving_latency(benchmark, digits, trained, trainer):
    """``running`` trains flat out (``max_busy=1.0``, the default); ``running-busyX`` caps the trainer at that share
    of wall time (``DistillConfig.max_busy``); ``running-switch0.5ms`` lowers Python's thread switch interval
    (default 5 ms) to 0.5 ms: a serving thread waiting for the GIL held by the trainer's Python glue then gets it
    back ten times sooner (the p99 tail)."""
    benchmark.group = "distilled tier serving (predict_one, 64->128->10)"
    samples, X_test, _ = digits
    tier = student_tier(SPEC, _identity, module=trained, num_threads=1)
    distiller = None
    interval = sys.getswitchinterval()
    if trainer.endswith("switch0.5ms"):
        sys.setswitchinterval(0.0005)
    if trainer.startswith("running"):
        # a trainer that never runs out of work: fresh samples, then endless replay steps on the reservoir
        buf = MemoryBuffer(capacity=100_000)
        busy = float(trainer.split("busy")[1]) if "busy" in trainer else 1.0
        cfg = DistillConfig(idle_replay=1_000_000, eval_every=10**9, take_timeout_s=0.05, num_threads=1, max_busy=busy)
        distiller = Distiller(student_tier(SPEC, _identity, seed=1), buf, cfg)
        buf.put_many(samples)
        distiller.start()
        steps = distiller.counters
        deadline = time.monotonic() + 30
        while steps["replay_steps"] < 50 and time.monotonic() < deadline:  # it is really training
            threading.Event().wait(0.01)
    xs = iter(np.resize(np.arange(len(X_test)), ROUNDS + 10))
    before = distiller.counters["replay_steps"] if distiller is not None else 0
    try:
        benchmark.pedantic(tier.predict_one, setup=lambda: ((X_test[next(xs)],), {}), rounds=ROUNDS, iterations=1)
    finally:
        sys.setswitchinterval(interval)
        if distiller is not None:
            distiller.stop()
            benchmark.extra_info["trainer_steps_during_run"] = distiller.counters["replay_steps"] - before
    benchmark.extra_info["p99_us"] = _p99(benchmark) * 1e6
    print(f"\nserving ({trainer}): p50 {benchmark.stats.stats.median * 1e6:.1f} us, p99 {_p99(benchmark) * 1e6:.1f} us")


# -- training throughput ---------------------------------------------------------------------------------------------
def _step_rate(benchmark, samples, config: DistillConfig) -> float:
    """Time ``Distiller.step`` at batch 32, refilling the buffer with 32 fresh samples before each (untimed);
    return the fresh samples trained per second at the median step."""
    benchmark.group = "training throughput (batch 32, 64->128->10)"
    torch.set_num_threads(1)
    buf = MemoryBuffer(capacity=1_000_000)
    d = Distiller(student_tier(SPEC, _identity, seed=0), buf, config)
    pool = iter(np.resize(np.arange(len(samples)), 32 * 3000))

    def refill():
        buf.put_many(samples[next(pool)] for _ in range(32))
        return (), {}

    benchmark.pedantic(d.step, setup=refill, rounds=2000, iterations=1, warmup_rounds=20)
    return 32 / benchmark.stats.stats.median


def test_training_throughput_distiller_step(benchmark, digits):
    config = DistillConfig(batch_size=32, eval_every=10**9, holdout_share=0.0, replay_share=0.0)
    rate = _step_rate(benchmark, digits[0], config)
    benchmark.extra_info["samples_per_s"] = rate
    print(f"\nDistiller.step: {rate:,.0f} samples/s at batch 32 (fresh only, no replay)")


def test_training_throughput_with_replay(benchmark, digits):
    rate = _step_rate(benchmark, digits[0], DistillConfig(batch_size=32, eval_every=10**9))
    benchmark.extra_info["fresh_samples_per_s"] = rate
    print(f"\nDistiller.step (10% holdout, 25% replay, gate off): {rate:,.0f} fresh samples/s")


def test_training_throughput_raw_torch(benchmark, digits):
    """The floor: one AdamW step of the same MLP and loss on ready tensors, no buffer or sample handling."""
    benchmark.group = "training throughput (batch 32, 64->128->10)"
    torch.set_num_threads(1)
    samples, _, _ = digits
    model = build_student(SPEC)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    x = torch.from_numpy(np.stack([s.x for s in samples[:32]]))
    t = torch.log(torch.from_numpy(np.stack([s.teacher for s in samples[:32]])))
    y = torch.tensor([s.label for s in samples[:32]])

    def step():
        loss = distill_loss(model(x), t, y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    benchmark.pedantic(step, rounds=2000, iterations=1, warmup_rounds=20)
    benchmark.extra_info["samples_per_s"] = 32 / benchmark.stats.stats.median
    print(f"\nraw torch step: {32 / benchmark.stats.stats.median:,.0f} samples/s at batch 32")


# -- compressed variants ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", ["float", "int8", "pruned50", "pruned50+int8"])
def test_student_variants(benchmark, digits, trained, variant):
    benchmark.group = "student variants (predict_one latency)"
    _, X_test, teacher_test = digits
    module, spec = trained, SPEC
    if variant.startswith("pruned"):
        module, spec = prune_hidden(module, spec, 0.5)
    if variant.endswith("int8"):
        module = quantize_int8(module)
    tier = student_tier(spec, _identity, module=module, num_threads=1)
    agreement = float(np.mean([p.output for p in tier.predict(list(X_test))] == teacher_test))
    xs = iter(np.resize(np.arange(len(X_test)), ROUNDS + 10))
    benchmark.pedantic(tier.predict_one, setup=lambda: ((X_test[next(xs)],), {}), rounds=ROUNDS, iterations=1)
    benchmark.extra_info.update(size_bytes=module_bytes(module), agreement=agreement, p99_us=_p99(benchmark) * 1e6)
    print(f"\n{variant}: size {module_bytes(module):,} B, agreement {agreement:.3f}, "
          f"p50 {benchmark.stats.stats.median * 1e6:.1f} us, p99 {_p99(benchmark) * 1e6:.1f} us")



# -- the full-size stream through a router -----------------------------------------------------------------------------
def test_full_size_stream(benchmark):
    """6,000 unseen inputs (digits shifted by up to a pixel, with noise) through base / distilled / full behind a
    Cascade, with a background Distiller and 10% shadow sampling; the claims of tests/test_distill_router.py at full
    size. The timed figure is the whole run."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.svm import SVC

    from tierswitch import Cascade, Router, SklearnTier
    from tierswitch.distill import DistillFeeder

    benchmark.group = "full-size stream"
    torch.set_num_threads(1)
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    X_rest, X_test, y_rest, y_test = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
    X_fit, X_pool, y_fit, _ = train_test_split(X_rest, y_rest, test_size=0.5, random_state=0, stratify=y_rest)

    def pool(batch):
        return np.stack(batch).reshape(-1, 4, 2, 4, 2).mean(axis=(2, 4)).reshape(-1, 16)

    base = LogisticRegression(max_iter=2000, C=5).fit(pool(list(X_fit)), y_fit)
    full = CalibratedClassifierCV(SVC(C=10, gamma=0.02, random_state=0), cv=5, ensemble=False).fit(X_fit, y_fit)
    rng = np.random.default_rng(0)
    stream = []
    for i in rng.integers(0, len(X_pool), 6000):
        dx, dy = rng.integers(-1, 2, size=2)
        img = np.roll(np.roll(X_pool[i].reshape(8, 8), dx, axis=1), dy, axis=0).reshape(64)
        stream.append(np.clip(img + rng.normal(0, 0.05, 64), 0, 1).astype(np.float32))
    X_test = X_test.astype(np.float32)
    teacher_test = full.predict(X_test)
    report: dict = {}

    def run():
        student = student_tier(SPEC, _identity, cost=2.0, num_threads=1)
        router = Router([SklearnTier("base", base, preprocess=pool, cost=1.0), student,
                         SklearnTier("full", full, preprocess=np.stack, cost=10.0)],
                        Cascade({"base": 0.9, "distilled": 0.75}))
        buf = MemoryBuffer()
        distiller = Distiller(student, buf, DistillConfig(eval_every=25, min_holdout=100, holdout_share=0.15,
                                                          idle_replay=4, take_timeout_s=0.05))
        feeder = DistillFeeder(buf, _identity, shadow_rate=0.1, seed=0).attach(router)
        out0 = np.array([p.output for p in student.predict(list(X_test))])
        distiller.start()
        tiers, costs = [], []
        for start in range(0, len(stream), 100):
            for x in stream[start:start + 100]:
                r = router(x, modality="tabular")
                tiers.append(r.tier)
                costs.append(r.cost)
            feeder.flush(60)
            distiller.wait_idle(60)
        distiller.stop()
        feeder.stop()
        out1 = np.array([p.output for p in student.predict(list(X_test))])
        fifth = len(tiers) // 5
        report.update(
            agreement_before=float(np.mean(out0 == teacher_test)), agreement_after=float(np.mean(out1 == teacher_test)),
            student_accuracy=float(np.mean(out1 == y_test)), teacher_accuracy=float(np.mean(teacher_test == y_test)),
            full_share_by_fifth=[tiers[k * fifth:(k + 1) * fifth].count("full") / fifth for k in range(5)],
            mean_cost_by_fifth=[float(np.mean(costs[k * fifth:(k + 1) * fifth])) for k in range(5)],
            promotions=[(e.step, round(e.agreement_before, 3), round(e.agreement_after, 3)) for e in distiller.events],
            live_agreement=router.agreement, samples=feeder.counters["samples"], shadow=feeder.counters["shadow"],
        )

    benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info.update(report)
    print("\n" + "\n".join(f"{k}: {v}" for k, v in report.items()))
    assert report["agreement_after"] >= report["agreement_before"] + 0.25
    assert report["full_share_by_fifth"][-1] <= 0.5 * report["full_share_by_fifth"][0]
