"""Send a workload's stream through the router, one request at a time, and log everything.

During the ``learn`` phase the feeders hand full-tier answers (and shadow samples) to the trainers, each in its
own worker process (``distill_into``'s default); the stream never waits for them: requests go out in a tight
loop, as a user's service would send them. Before the ``score`` phase the feeders are detached and each
distillation finishes (everything fed is trained on, the last promotion is served) and stops: scored inputs train
nothing. At every window the student is probed on a fixed set of held-out
inputs (agreement with the full tier, accuracy), which trains nothing either.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tierswitch.demo.assemble import Assembled
from tierswitch.demo.workloads import Workload

__all__ = ["Probe", "StreamLog", "run_stream"]

REQUEST_FIELDS = ("i", "phase", "modality", "repeat", "tier", "output", "truth", "correct", "cost", "full_cost",
                  "latency_us", "cached", "confidence", "escalations", "student_version")


@dataclass
class StreamLog:
    """Per-request rows (``REQUEST_FIELDS``) and per-window curve points."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    curve: list[dict[str, Any]] = field(default_factory=list)
    probe_start: list[dict[str, Any]] = field(default_factory=list)
    wall_s: float = 0.0
    wait_s: float = 0.0


@dataclass
class Probe:
    """A fixed held-out probe set per family (test inputs, never trained on) with the full tier's answers."""

    inputs: list[list[Any]]
    full: list[np.ndarray]
    truth: list[np.ndarray]

    @classmethod
    def build(cls, workload: Workload, size: int, seed: int) -> Probe:
        rng = np.random.default_rng(seed)
        inputs, full, truth = [], [], []
        for fam in workload.families:
            idx = rng.choice(len(fam.data.test_x), size=min(size, len(fam.data.test_x)), replace=False)
            xs = [fam.data.test_x[i] for i in idx]
            inputs.append(xs)
            full.append(fam.full.model.proba(xs).argmax(axis=1))
            truth.append(fam.data.test_y[idx])
        return cls(inputs, full, truth)

    def measure(self, asm: Assembled) -> list[dict[str, Any]]:
        """Each student's agreement with its full tier and its accuracy on the probe set, and its version."""
        out = []
        for student, xs, full, truth in zip(asm.students, self.inputs, self.full, self.truth):
            classes = {c: i for i, c in enumerate(student.classes)}
            preds = np.array([classes[p.output] for p in student.predict(xs)])
            out.append({"agreement": float(np.mean(preds == full)), "accuracy": float(np.mean(preds == truth)),
                        "version": student.version})
        return out


def _stop_learning(asm: Assembled) -> None:
    for run in asm.runs:
        run.feeder.detach()  # no more samples; what is queued still goes to the trainer
    for run in asm.runs:
        run.finish()  # everything fed is trained on and the last promotion served, before scoring starts
        run.detach()


def run_stream(
    workload: Workload,
    asm: Assembled,
    *,
    windows: int = 50,
    probe_size: int = 300,
    seed: int = 0,
    on_request: Callable[[dict[str, Any], StreamLog], None] | None = None,
) -> StreamLog:
    """Route every item of the stream; returns the per-request log and the curve (one point per window)."""
    probe = Probe.build(workload, probe_size, seed)
    log = StreamLog(probe_start=probe.measure(asm))
    items = workload.items
    ends = set(np.linspace(0, len(items), min(windows, len(items)) + 1).astype(int)[1:] - 1)  # near-equal windows
    full_price = {i: asm.prices[f.names["full"]] for i, f in enumerate(workload.families)}
    for distiller in asm.distillers:
        distiller.start()
    started = time.perf_counter()
    learning = bool(asm.distillers)
    win: list[dict[str, Any]] = []
    last_probe: list[dict[str, Any]] | None = None
    try:
        for i, item in enumerate(items):
            if learning and item.phase == "score":
                learning = False  # first: should stopping fail, the finally below must not try it a second time
                _stop_learning(asm)
                last_probe = None  # probe again the student that serves the scored inputs (its owed replay done)
            routed = asm.router(item.payload, modality=item.modality)
            row = {
                "i": i, "phase": item.phase, "modality": item.modality, "repeat": int(item.repeat), "tier": routed.tier,
                "output": routed.output, "truth": item.truth, "correct": int(routed.output == item.truth),
                "cost": routed.cost, "full_cost": full_price[item.family], "latency_us": routed.latency_s * 1e6,
                "cached": int(routed.cached), "confidence": routed.confidence,
                "escalations": sum(1 for s in routed.trace if s.kind == "escalate"),
                "student_version": asm.students[item.family].version,
            }
            log.rows.append(row)
            win.append(row)
            if on_request is not None:
                on_request(row, log)
            if i in ends:
                if learning or last_probe is None:
                    last_probe = probe.measure(asm)
                log.curve.append(_curve_point(workload, asm, log, win, last_probe))
                win = []
    finally:
        if learning:
            _stop_learning(asm)
    log.wall_s = time.perf_counter() - started
    return log


def _curve_point(workload: Workload, asm: Assembled, log: StreamLog, win: Sequence[dict[str, Any]],
                 probes: list[dict[str, Any]]) -> dict[str, Any]:
    served = Counter(r["tier"] for r in win)
    scored = [r for r in log.rows if r["phase"] == "score"]
    point: dict[str, Any] = {
        "requests": win[-1]["i"] + 1,
        "phase": win[-1]["phase"],
        "window_cost": float(np.mean([r["cost"] for r in win])),
        "window_full_cost": float(np.mean([r["full_cost"] for r in win])),
        "running_scored_accuracy": float(np.mean([r["correct"] for r in scored])) if scored else float("nan"),
        "cache_hits": sum(r["cached"] for r in win),
        "promotions": sum(len(d.events) for d in asm.distillers),
    }
    for name in asm.router.tier_order:
        point[f"share_{name}"] = served.get(name, 0) / len(win)
    for fam, probe in zip(workload.families, probes):
        student = fam.names["distilled"]
        point[f"agreement_{student}"] = probe["agreement"]
        point[f"accuracy_{student}"] = probe["accuracy"]
        point[f"live_agreement_{student}"] = asm.router.agreement.get(student, float("nan"))
    return point
