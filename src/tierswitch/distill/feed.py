"""Feeding the student from live traffic, off the request path.

``DistillFeeder`` is a router hook (``router.add_hook(feeder)``, or ``feeder.attach(router)``). For every request
it puts at most one item on a bounded hand-off queue and returns at once: when the queue is full the oldest item is
dropped and counted, so a request is never blocked nor failed. A background thread turns the items into samples:
- a request the full tier answered (or escalated to) gives a sample from that answer;
- shadow sampling: with probability ``shadow_rate`` (seeded), a request a cheaper tier answered is also sent to the
  full tier; the pair gives a sample and a live agreement measurement (``router.observe_agreement``).
A request the full tier cannot accept (``router.tiers[full].accepts(modality, length)`` is false: another modality
in a mixed router, or too long) is neither shadowed nor fed; it is counted in ``counters["unaccepted"]``.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

import numpy as np

from tierswitch.distill.buffer import Buffer
from tierswitch.distill.sample import Sample
from tierswitch.errors import ConfigError, DistillError
from tierswitch.tiers.base import same_output
from tierswitch.types import DecisionRecord, Prediction
from tierswitch.validation import finite, positive

__all__ = ["DistillFeeder", "SampleSink"]


class SampleSink(Protocol):
    """Where the feeder puts samples: a ``Buffer`` (thread trainer, Redis stream) or a ``ProcessTrainer``."""

    def put_many(self, samples: Iterable[Sample]) -> int: ...

log = logging.getLogger("tierswitch.distill")

_Item = tuple[str, Any, Prediction | None, Prediction | None, Any, float]  # kind, payload, full, cheap, truth, t


class DistillFeeder:
    """Hand full-tier answers (and shadow samples) to ``buffer``.

    ``student_input(payload)`` computes the student's features in the feeder thread (None: samples carry the raw
    payload, which must then be msgpack-serialisable). ``classes`` maps outputs to class indices when a prediction
    has no probabilities, and ground truth found in the request's meta under ``truth_key`` to an index.
    ``queue_size`` bounds the hand-off queue; the thread turns up to ``max_batch`` items at a time into samples
    (one batched shadow call, one buffer write). ``stop()`` ends it for good.
    """

    def __init__(
        self,
        buffer: Buffer | SampleSink,
        student_input: Callable[[Any], np.ndarray] | None = None,
        *,
        router: Any = None,
        full_tier: str | None = None,
        shadow_rate: float = 0.0,
        seed: int = 0,
        queue_size: int = 1024,
        classes: Sequence[Any] | None = None,
        truth_key: str = "truth",
        max_batch: int = 64,
    ) -> None:
        shadow_rate = finite("distill.shadow_rate", shadow_rate, low=0.0, high=1.0)
        positive("distill.queue_size", queue_size, integer=True)
        positive("distill.max_batch", max_batch, integer=True)  # 0 would spin the feeder thread on a full queue
        self.buffer = buffer
        self.student_input = student_input
        self.router = router
        self.full_tier = full_tier
        self.shadow_rate = shadow_rate
        self.queue_size = queue_size
        self.classes = list(classes) if classes is not None else None
        self._index = {c: i for i, c in enumerate(self.classes)} if self.classes is not None else None
        self.truth_key = truth_key
        self.max_batch = max_batch
        self.counters = {"queued": 0, "dropped": 0, "stopped": 0, "samples": 0, "shadow": 0, "agreed": 0,
                         "unaccepted": 0, "label_mismatch": 0, "errors": 0}
        self.clock: Callable[[], float] = time.time
        self._rng = random.Random(seed)
        self._queue: deque[_Item] = deque()
        self._cond = threading.Condition()
        self._busy = 0
        self._closed = False  # set by stop(): the thread drains the queue and ends, later requests are dropped
        self._thread: threading.Thread | None = None

    def attach(self, router: Any) -> DistillFeeder:
        """Bind to ``router`` (for shadow calls and agreement) and register as its hook."""
        if self.full_tier is not None and self.full_tier not in router.tiers:
            raise ConfigError("distill.full_tier", f"unknown tier {self.full_tier!r}; the router has "
                                                   f"{list(router.tiers)}")
        self.router = router
        router.add_hook(self)
        return self

    def detach(self) -> None:
        """Unregister from the router (if attached); later offers are counted as ``stopped``, not ``dropped``."""
        hooks = getattr(self.router, "hooks", None)
        if hooks is not None and self in hooks:
            hooks.remove(self)
        remove = getattr(self.router, "remove_hook", None)
        if hooks is None and callable(remove):
            remove(self)
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    # -- the hook: cheap, never raises ----------------------------------------------------------------------
    def __call__(self, record: DecisionRecord) -> None:
        try:
            self._offer(record)
        except Exception:  # a hook must never fail a request; count and move on
            self._count("errors")

    def _count(self, counter: str, n: int = 1) -> None:
        with self._cond:  # serving threads and the feeder thread all count: `+=` on a dict is not atomic
            self.counters[counter] += n

    def _offer(self, record: DecisionRecord) -> None:
        if record.cached:  # its answer was learned from when it was first computed
            return
        if self._closed:
            self._count("stopped")
            return
        full = self.full_tier or (self.router.full if self.router is not None else None)
        truth = record.meta.get(self.truth_key) if record.meta else None
        teacher = record.predictions.get(full) if full else None
        cheap: Prediction | None = None
        if teacher is None:
            cheap = record.predictions.get(record.tier)
            if cheap is None or self.router is None or self.shadow_rate <= 0:
                return
        if not self._full_accepts(full, record):  # checked before the draw: other modalities leave the seeded
            self._count("unaccepted")  # sequence of shadow draws untouched
            return
        now = self.clock()
        if teacher is not None:  # the cheaper answer it was escalated from, if any: a disagreement ranks higher
            cheaper = next((p for name, p in record.predictions.items() if name != full), None)
            item: _Item = ("full", record.request.payload, teacher, cheaper, truth, now)
        else:
            with self._cond:
                draw = self._rng.random()
            if draw >= self.shadow_rate:
                return
            item = ("shadow", record.request.payload, None, cheap, truth, now)
        with self._cond:
            if self._closed:  # checked under the lock: a stopped feeder never gets a thread again
                self.counters["stopped"] += 1
                return
            if len(self._queue) >= self.queue_size:
                self._queue.popleft()
                self.counters["dropped"] += 1
            self._queue.append(item)
            self.counters["queued"] += 1
            self._cond.notify()
            if self._thread is None:
                self._start_thread()

    def _full_accepts(self, full: str | None, record: DecisionRecord) -> bool:
        """Whether the full tier may take this request's input (its capabilities, as the router checks them)."""
        tier = self.router.tiers.get(full) if self.router is not None and full else None
        if tier is None:  # no router to ask (the full tier answered, so it accepted) or a name _process reports
            return True
        if record.features is None:
            return full in record.capable
        return bool(tier.accepts(record.request.modality, record.features.length))

    # -- the background side --------------------------------------------------------------------------------
    def start(self) -> DistillFeeder:
        """Start the feeder thread now (the first offered request also starts it)."""
        with self._cond:
            if self._closed:
                raise DistillError("this feeder was stopped for good; attach a new DistillFeeder")
            if self._thread is None:
                self._start_thread()
        return self

    def _start_thread(self) -> None:
        self._thread = threading.Thread(target=self._run, name="tierswitch-feeder", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Process what is queued, then stop for good (later requests are counted as ``stopped``)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Wait until every queued item has been turned into samples; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._queue and not self._busy, timeout=timeout_s)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._queue or self._closed)
                if not self._queue:  # stopped, and everything queued before is done
                    return
                items = [self._queue.popleft() for _ in range(min(self.max_batch, len(self._queue)))]
                self._busy += 1
            try:
                self._process(items)
            except Exception as exc:  # a broken buffer loses these items, never the thread
                self._count("errors")
                log.warning("distillation feeder dropped %d item(s): %s", len(items), exc)
            finally:
                with self._cond:
                    self._busy -= 1
                    self._cond.notify_all()

    def _process(self, items: list[_Item]) -> None:
        answers = self._shadow_answers([it for it in items if it[0] == "shadow"])
        samples = []
        for it in items:
            teacher = it[2] if it[2] is not None else answers.get(id(it))
            if teacher is None:  # its shadow call failed (counted): the full tier's own answers still go through
                continue
            try:
                sample = self._sample(it, teacher)
                if sample is not None:  # None: a teacher label outside the student's classes (counted)
                    samples.append(sample)
            except Exception as exc:  # one unusable answer (no probabilities, bad truth) loses only its own item
                self._count("errors")
                log.warning("distillation feeder dropped an item: %s", exc)
        self._count("samples", self.buffer.put_many(samples))

    def _shadow_answers(self, shadow: list[_Item]) -> dict[int, Prediction]:
        """The full tier's answers to the shadowed requests (one batched call), by ``id`` of the item; empty (and
        counted in ``errors``) when that call fails."""
        if not shadow:
            return {}
        full_name = self.full_tier or self.router.full
        try:
            predictions = self.router.tiers[full_name].predict([it[1] for it in shadow])
        except Exception as exc:  # a failing teacher costs the shadow samples of this chunk, nothing else
            self._count("errors")
            log.warning("distillation feeder: shadow call to %r failed for %d item(s): %s", full_name, len(shadow), exc)
            return {}
        observe = getattr(self.router, "observe_agreement", None)
        answers: dict[int, Prediction] = {}
        for it, teacher in zip(shadow, predictions):
            cheap = it[3]
            assert cheap is not None
            answers[id(it)] = teacher
            agreed = same_output(cheap.output, teacher.output)
            self._count("shadow")
            self._count("agreed", int(agreed))
            if observe is not None:
                observe(cheap.tier, agreed)
        return answers

    def _sample(self, item: _Item, teacher: Prediction) -> Sample | None:
        source, payload, _, cheap, truth, arrived = item
        if self._index is not None and teacher.output not in self._index:
            self._count("label_mismatch")
            if self.counters["label_mismatch"] == 1:
                log.warning("distillation feeder: the teacher %r answered %r, which is not one of the student's "
                            "classes %s; such answers are not trained on (counters['label_mismatch'])",
                            teacher.tier, teacher.output, self.classes[:10] if self.classes else None)
            return None
        if teacher.probs is not None:
            probs = np.asarray(teacher.probs, dtype=np.float32)
            label = int(probs.argmax())
        elif self._index is not None and teacher.output in self._index:
            label = self._index[teacher.output]
            probs = np.full(len(self._index), 1e-6, dtype=np.float32)
            probs[label] = 1.0
        else:
            raise DistillError(
                f"tier {teacher.tier!r} gave no probabilities and output {teacher.output!r} is not in `classes`; "
                "give DistillFeeder(classes=[...]) the full tier's labels"
            )
        truth_idx = None
        if truth is not None:
            truth_idx = self._index.get(truth) if self._index is not None else int(truth)
        x = None if self.student_input is None else np.asarray(self.student_input(payload), dtype=np.float32)
        disagree = cheap is not None and not same_output(cheap.output, teacher.output)
        priority = float(disagree) + 1.0 - float(probs.max())  # disagreements and uncertain inputs train first
        return Sample(
            teacher=probs, label=label, x=x, raw=payload if x is None else None, truth=truth_idx,
            meta={"src": source, "v": teacher.tier_version, "t": arrived, "p": round(priority, 4)},
        )
