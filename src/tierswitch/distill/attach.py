"""Three lines to turn online distillation on: ``distill_into(router, "distilled", teacher="full")``.

    spec = StudentSpec.for_text(classes)                               # hashed word + char n-grams -> MLP
    router = Router([base, student_tier(spec, cost=2.0), full], policy)
    run = distill_into(router, "distilled", teacher="full")           # or router.distill_into(...)

``distill_into`` checks the wiring (the student is a ``StudentTier`` in the router with a cost, its class labels are
the teacher's: ``LabelSetError`` otherwise), attaches a ``DistillFeeder`` (the teacher's answers plus a
``shadow_rate`` share of shadow calls, off the request path) and starts the trainer beside serving:
- ``worker="process"`` (default): a local worker process (``ProcessTrainer``), so the GIL of a busy server never
  starves it; promoted weights come back as verified safetensors bytes and are swapped into the tier;
- ``worker="thread"``: the ``Distiller`` in a background thread of this process (paced by ``max_busy``);
- ``worker="redis"``: samples go to the fleet's Redis stream (``redis=client``); ``tierswitch distill-worker``
  processes train them (the same trainer loop) and every router follows the ``WeightStore`` (``WeightSubscriber``).

The returned ``Distillation`` has ``summary()`` (feeder counters, trainer counters, promotions, the lag gauge
``waiting``/``lag_s`` and ``samples_per_s``), ``metrics()`` (the same as flat gauges), ``finish()`` (everything
sent so far trained on: call it before scoring the student) and ``detach()``.

This module is layer 1: it does not import the router; it types it with the ``DistillRouter`` protocol.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from tierswitch.distill.buffer import MemoryBuffer
from tierswitch.distill.config import DistillConfig
from tierswitch.distill.feed import DistillFeeder
from tierswitch.distill.gate import PromotionEvent
from tierswitch.distill.student import StudentTier
from tierswitch.errors import ConfigError, LabelSetError
from tierswitch.tiers.base import CostModel
from tierswitch.validation import finite

__all__ = ["Distillation", "DistillRouter", "distill_into", "median_latency_s"]

log = logging.getLogger("tierswitch.distill")

WORKERS = ("process", "thread", "redis")


class DistillRouter(Protocol):
    """What ``distill_into`` uses of a router."""

    @property
    def tiers(self) -> Mapping[str, Any]: ...

    def add_hook(self, hook: Callable[[Any], None]) -> Any: ...

    def observe_agreement(self, tier: str, agreed: bool) -> Any: ...


def _teacher_classes(tier: Any) -> list[Any] | None:
    """The teacher's labels, in the order of its probability columns, when it declares them (``classes``, or a
    scikit-learn model's ``classes_``)."""
    classes = getattr(tier, "classes", None)
    if classes is None:
        classes = getattr(getattr(tier, "model", None), "classes_", None)
    if classes is None:
        return None
    try:
        return [c.item() if hasattr(c, "item") else c for c in list(classes)]
    except TypeError:
        return None


def check_labels(student: StudentTier, teacher: Any) -> None:
    """``LabelSetError`` when the student's class labels are not the teacher's (when the teacher declares them)."""
    mine = student.spec.classes
    if mine is None:
        raise LabelSetError(f"the student {student.name!r} has no class labels: build its spec with classes= (the "
                            f"teacher's output values, in the order of its probability columns)")
    theirs = _teacher_classes(teacher)
    if theirs is None:
        return  # checked on every answer by the feeder (counters['label_mismatch'])
    if list(mine) != theirs:
        missing = [c for c in theirs if c not in mine][:5]
        extra = [c for c in mine if c not in theirs][:5]
        how = "in another order" if set(mine) == set(theirs) else f"teacher-only {missing}, student-only {extra}"
        raise LabelSetError(f"the student {student.name!r} and the teacher {getattr(teacher, 'name', '?')!r} label "
                            f"their classes differently ({how}); give the student the teacher's classes, in order")


def measure_cost(student: StudentTier, teacher: Any, inputs: Sequence[Any], repeat: int = 3) -> float:
    """The student's price in the teacher's cost unit: the teacher's per-call cost x the latency ratio
    (median single-request latency of each on ``inputs``)."""
    if not inputs:
        raise ConfigError("distill.calibration", "cost='measured' needs a few inputs to time (calibration=[...])")

    ratio = median_latency_s(student.predict_one, inputs, repeat) / max(
        median_latency_s(teacher.predict_one, inputs, repeat), 1e-9)
    return float(teacher.cost_model.per_call) * ratio


def median_latency_s(call: Callable[[Any], Any], inputs: Sequence[Any], repeat: int = 3) -> float:
    """Median wall time in seconds of ``call(x)`` over ``repeat`` passes of ``inputs`` (non-empty)."""
    times = []
    for _ in range(repeat):
        for x in inputs:
            started = time.perf_counter()
            call(x)
            times.append(time.perf_counter() - started)
    return statistics.median(times)


class Distillation:
    """A running distillation: the ``feeder``, the ``trainer`` (a ``ProcessTrainer`` or a ``Distiller``) and, in
    fleet mode, the weight ``subscriber``."""

    def __init__(self, student: StudentTier, feeder: DistillFeeder, trainer: Any, worker: str,
                 buffer: Any = None, subscriber: Any = None) -> None:
        self.student = student
        self.feeder = feeder
        self.trainer = trainer
        self.worker = worker
        self.buffer = buffer
        self.subscriber = subscriber
        self.detached = False

    @property
    def events(self) -> list[PromotionEvent]:
        return list(getattr(self.trainer, "events", []))

    def finish(self, timeout_s: float = 120.0) -> bool:
        """Wait until everything fed so far has been trained on and the trainer is idle (its last promotion
        served); call it before scoring the student. False on timeout. Serving goes on meanwhile."""
        deadline = time.monotonic() + timeout_s
        if not self.feeder.flush(timeout_s):
            return False
        if self.worker == "process":
            return bool(self.trainer.finish(max(0.1, deadline - time.monotonic())))
        if self.worker == "thread":
            while len(self.buffer) and time.monotonic() < deadline:
                self.trainer.wait_idle(min(1.0, max(0.01, deadline - time.monotonic())))
            return bool(self.trainer.wait_idle(max(0.01, deadline - time.monotonic())))
        return True  # fleet: the workers train on their own schedule

    def detach(self, timeout_s: float = 10.0) -> None:
        """Stop feeding (later requests are counted as ``stopped``) and stop the trainer; the student keeps
        serving its last promoted weights."""
        if self.detached:
            return
        self.detached = True
        self.feeder.detach()
        self.feeder.stop(timeout_s)
        if self.worker == "redis":
            if self.subscriber is not None:
                self.subscriber.stop(timeout_s)
        else:
            self.trainer.stop(timeout_s)

    def __enter__(self) -> Distillation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.detach()

    def summary(self) -> dict[str, Any]:
        """Feeder counters (``dropped`` = lost to a full queue, ``stopped`` = after detach), trainer counters,
        promotions, the lag gauge (``waiting`` samples, ``lag_s`` seconds behind) and ``samples_per_s``."""
        trainer = self.trainer.summary() if self.trainer is not None else {}
        return {"worker": self.worker, "student": self.student.name, "version": self.student.version,
                "promotions": len(self.events), "feeder": dict(self.feeder.counters), "trainer": trainer,
                "waiting": trainer.get("waiting", 0), "lag_s": trainer.get("lag_s", 0.0),
                "samples_per_s": trainer.get("samples_per_s", 0.0)}

    def metrics(self) -> dict[str, float]:
        """Flat gauges for a metrics exporter (``tierswitch_distill_*``)."""
        s = self.summary()
        t, f = s["trainer"], s["feeder"]
        return {"tierswitch_distill_waiting_samples": float(s["waiting"]),
                "tierswitch_distill_lag_seconds": float(s["lag_s"]),
                "tierswitch_distill_samples_per_second": float(s["samples_per_s"]),
                "tierswitch_distill_trained_total": float(t.get("trained", 0)),
                "tierswitch_distill_promotions_total": float(s["promotions"]),
                "tierswitch_distill_dropped_total": float(f["dropped"] + t.get("dropped", 0)),
                "tierswitch_distill_stopped_total": float(f["stopped"])}


def distill_into(
    router: DistillRouter,
    student: str = "distilled",
    teacher: str = "full",
    *,
    config: DistillConfig | None = None,
    worker: str = "process",
    shadow_rate: float = 0.1,
    cost: float | str | None = None,
    calibration: Sequence[Any] | None = None,
    seed: int = 0,
    queue_size: int = 4096,
    redis: Any = None,
    namespace: str = "tierswitch",
    start: bool = True,
) -> Distillation:
    """Train ``router.tiers[student]`` online from ``router.tiers[teacher]``'s answers (see the module docstring).

    ``cost``: the student's price per call in the router's cost unit (a number), or ``"measured"`` (the teacher's
    price x the latency ratio on ``calibration`` inputs); required unless the student tier was built with one.
    ``config``: trainer settings (``DistillConfig()``: works from a few hundred teacher answers). ``seed`` seeds
    shadow sampling and the trainer."""
    tiers = router.tiers
    for field, name in (("distill.student", student), ("distill.teacher", teacher)):
        if name not in tiers:
            raise ConfigError(field, f"unknown tier {name!r}; the router has {list(tiers)}")
    tier, full = tiers[student], tiers[teacher]
    if not isinstance(tier, StudentTier):
        raise ConfigError("distill.student", f"tier {student!r} is a {type(tier).__name__}, not a StudentTier: "
                                             "build it with tierswitch.distill.student_tier(spec, cost=...)")
    if worker not in WORKERS:
        raise ConfigError("distill.worker", f"must be one of {list(WORKERS)}, got {worker!r}")
    check_labels(tier, full)
    if cost == "measured":
        tier.cost_model = CostModel(per_call=measure_cost(tier, full, list(calibration or [])))
        tier.cost_set = True
    elif cost is not None:
        tier.cost_model = CostModel(per_call=finite("distill.cost", cost, low=0.0))
        tier.cost_set = True
    elif not tier.cost_set:
        raise ConfigError("distill.cost", f"the student {student!r} has no cost: give student_tier(..., cost=...) "
                                          "or distill_into(..., cost=<price per call> or cost='measured')")
    config = config or DistillConfig(seed=seed)
    classes = list(tier.spec.classes or ())
    # with the spec's featuriser, samples carry the raw payload and the trainer featurises it; otherwise the
    # feeder computes the caller's student_input here (a worker process cannot receive a Python callable)
    features = tier.student_input
    subscriber = buffer = None
    if worker == "process":
        from tierswitch.distill.process import ProcessTrainer

        trainer: Any = ProcessTrainer(tier, config, queue_size=max(queue_size, 8192))
        sink: Any = trainer
    elif worker == "thread":
        from tierswitch.distill.trainer import Distiller

        buffer = MemoryBuffer(capacity=20_000, reservoir=4000, seed=config.seed)
        trainer = Distiller(tier, buffer, config)
        sink = buffer
    else:
        if redis is None:
            raise ConfigError("distill.redis", "worker='redis' needs redis=<a redis.Redis client>")
        from tierswitch.distill.redis_buffer import RedisStreamBuffer
        from tierswitch.distill.reload import WeightSubscriber
        from tierswitch.distill.weights import WeightStore

        sink = RedisStreamBuffer(redis, f"{namespace}:samples", seed=config.seed)
        subscriber = WeightSubscriber(WeightStore(redis, namespace), tier)
        trainer = None
    feeder = DistillFeeder(sink, features, full_tier=teacher, shadow_rate=shadow_rate, seed=seed,
                           classes=classes, queue_size=queue_size)
    run = Distillation(tier, feeder, trainer, worker, buffer=buffer, subscriber=subscriber)
    if start:
        if trainer is not None:
            trainer.start()
        if subscriber is not None:
            subscriber.start()
    feeder.attach(router)
    return run
