"""The ``Distiller``: train a student on teacher-labelled samples while it serves, gate and promote it.

This module holds one step of that work: take a batch, train on it (plus replay), gate, promote. ``step()`` is
synchronous (tests drive it directly); the loop that runs steps in a background thread (``start()``/``stop()``,
``run_until``) is the ``TrainingLoop`` mixin in ``tierswitch.distill.loop``. The trainer owns a training copy of the
student; the tier keeps serving its own module until a promotion swaps a snapshot in atomically and bumps the tier's
version. A step waits for samples outside the training lock, so ``replay_step()`` or ``gate()`` from another thread
waits at most for a training step in progress, never for samples.
"""

from __future__ import annotations

import copy
import logging
import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from tierswitch.distill.buffer import Buffer
from tierswitch.distill.compress import compress
from tierswitch.distill.config import DistillConfig
from tierswitch.distill.features import SparseRow
from tierswitch.distill.gate import GateResult, PromotionEvent, judge
from tierswitch.distill.loop import TrainingLoop
from tierswitch.distill.loss import distill_loss
from tierswitch.distill.optim import AdamW
from tierswitch.distill.sample import Sample, is_finite, teacher_logits
from tierswitch.distill.student import StudentInput, StudentSpec, StudentTier, build_student
from tierswitch.distill.weights import WeightStore

__all__ = ["Distiller"]

Row = np.ndarray | SparseRow  # one sample's features: dense, or (columns, values) from the spec's featuriser

log = logging.getLogger("tierswitch.distill")


def _as_sparse(row: np.ndarray) -> SparseRow:
    cols = np.flatnonzero(row)
    return cols, row[cols]


def _sparse_first_layer(model: nn.Module, rows: Sequence[Row], table: torch.Tensor | None, grad: bool = True,
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """For a batch of sparse rows: the logits computed through only the first-layer rows of ``table`` (the first
    layer's weight, transposed: input_dim x hidden) the batch touches, a gather instead of a dense
    (batch x input_dim) product; plus the row ids and the gathered slice, whose gradient is the whole first-layer
    gradient. None for dense rows or without a table."""
    if table is None or not rows or not all(isinstance(r, tuple) for r in rows):
        return None
    cols = np.concatenate([r[0] for r in rows])
    vals = np.concatenate([r[1] for r in rows]).astype(np.float32, copy=False)
    used, inverse = np.unique(cols, return_inverse=True)
    x = np.zeros((len(rows), len(used)), dtype=np.float32)
    owner = np.repeat(np.arange(len(rows)), [len(r[0]) for r in rows])
    np.add.at(x, (owner, inverse), vals)
    ids = torch.from_numpy(used)
    w = table.index_select(0, ids)
    if grad:
        w.requires_grad_(True)
    h = torch.from_numpy(x) @ w + model[0].bias  # type: ignore[index]
    return ids, w, model[1:](h)  # type: ignore[index]


def _is_float_mlp(module: nn.Module) -> bool:
    return all(isinstance(m, (nn.Sequential, nn.Linear, nn.ReLU)) for m in module.modules())


class Distiller(TrainingLoop):
    """Distil the teacher's answers in ``buffer`` into ``tier``'s student (``start()`` trains in the background).

    ``store`` (optional) publishes each promoted version to a fleet; ``on_promote(event)`` is called after each
    promotion. ``student_input`` (default: the tier's) turns samples that carry a raw payload into features.
    ``spec`` is the architecture to train (default: the tier's); when the tier serves a different one (pruned) or a
    quantized module, training starts from a fresh ``spec`` student rather than from the served weights.
    Public record: ``events`` (promotions), ``gates`` (every gate evaluation) and ``counters``.
    """

    def __init__(
        self,
        tier: StudentTier,
        buffer: Buffer,
        config: DistillConfig | None = None,
        *,
        student_input: StudentInput | None = None,
        spec: StudentSpec | None = None,
        store: WeightStore | None = None,
        on_promote: Callable[[PromotionEvent], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()  # the background loop's state (tierswitch.distill.loop)
        self.tier = tier
        self.buffer = buffer
        self.config = config or DistillConfig()
        self.student_input = student_input
        self.store = store
        self.on_promote = on_promote
        self.clock = clock
        self.spec = spec or tier.spec
        self.events: list[PromotionEvent] = []
        self.gates: list[GateResult] = []
        self.counters = {"steps": 0, "replay_steps": 0, "trained": 0, "replayed": 0, "holdout": 0,
                         "skipped_nonfinite": 0, "nonfinite_samples": 0, "invalid_samples": 0, "errors": 0}
        self._holdout: deque[tuple[Row, int]] = deque(maxlen=self.config.holdout_size)
        self._rng = random.Random(self.config.seed)
        self._model: nn.Module | None = None
        self._optimizer: AdamW | None = None
        # sparse inputs train the first layer as a transposed table (rows = input columns) with its own Adam
        # moments, synced into the module before any read (gate, promotion, dense batches)
        self._rows: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self._dirty = False
        # _lock guards the training copy, optimizer, holdout and counters, and is held only while computing;
        # _take_lock serialises takes (a buffer's cursors) and is never held while training, so replay_step() and
        # gate() from another thread never wait for a take that is waiting for samples.
        self._lock = threading.Lock()
        self._take_lock = threading.Lock()

    # -- the training copy (built lazily: constructors do not act) ------------------------------------------
    def _ensure_model(self) -> nn.Module:
        if self._model is None:
            serving = self.tier.module
            if _is_float_mlp(serving) and self.tier.spec.hidden == self.spec.hidden:
                self._model = copy.deepcopy(serving)
            else:  # a quantized or pruned student cannot be trained further: restart from the full architecture
                self._model = build_student(self.spec, self.config.seed)
            self._model.train()
            cfg = self.config
            self._optimizer = AdamW(self._model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        return self._model

    @property
    def model(self) -> nn.Module:
        """The candidate being trained (do not serve it directly: promotion snapshots it)."""
        model = self._ensure_model()
        self._sync()
        return model

    def _table(self, model: nn.Module, rows: Sequence[Row]) -> torch.Tensor | None:
        """The transposed first-layer table that sparse batches train (made on the first sparse batch)."""
        if self._rows is None:
            if not (rows and isinstance(rows[0], tuple) and isinstance(model, nn.Sequential)
                    and isinstance(model[0], nn.Linear)):
                return None
            w = model[0].weight
            self._rows = (w.detach().T.contiguous(), torch.zeros(w.shape[1], w.shape[0]),
                          torch.zeros(w.shape[1], w.shape[0]))
        return self._rows[0]

    def _sync(self) -> None:
        """Copy the trained first-layer table back into the module (before anything reads the module)."""
        if self._dirty and self._rows is not None and self._model is not None:
            with torch.no_grad():
                self._model[0].weight.copy_(self._rows[0].T)  # type: ignore[index]
            self._dirty = False

    def _features(self, sample: Sample) -> Row:
        if sample.x is not None:
            return np.asarray(sample.x, dtype=np.float32).reshape(-1)
        if self.student_input is not None:
            return np.asarray(self.student_input(sample.raw), dtype=np.float32).reshape(-1)
        return self.tier.features(sample.raw)

    def _stack(self, rows: Sequence[Row]) -> np.ndarray:
        """A dense float32 (n, input_dim) batch of dense vectors and/or sparse rows."""
        if all(isinstance(r, np.ndarray) for r in rows):
            return np.stack(rows)  # all dense here
        out = np.zeros((len(rows), self.spec.input_dim), dtype=np.float32)
        for i, r in enumerate(rows):
            if isinstance(r, np.ndarray):
                out[i] = r
            else:
                np.add.at(out[i], r[0], r[1])  # repeated columns add up, as in the numpy forward
        return out

    def _problem(self, x: Row) -> str | None:
        width = self.spec.input_dim
        if isinstance(x, np.ndarray):
            return None if x.shape == (width,) else f"{x.size} features for a student of input_dim {width}"
        cols, vals = x
        if len(cols) and (int(cols.min()) < 0 or int(cols.max()) >= width):
            return f"a sparse column outside [0, {width})"
        return None if np.isfinite(vals).all() else "non-finite"

    def _usable(self, samples: Sequence[Sample]) -> list[tuple[Sample, Row]]:
        """Each sample that can train the student, with its features; the others are dropped and counted: NaN/inf
        in the teacher's answer or the features (``nonfinite_samples``), or features of the wrong width, a teacher
        over the wrong number of classes, or a ``student_input`` that failed on the payload (``invalid_samples``).
        One such sample must not fail its whole batch nor, once held out, every later gate."""
        usable: list[tuple[Sample, Row]] = []
        n_classes = (self.spec.n_classes,)
        for sample in samples:
            if not is_finite(sample):
                self.counters["nonfinite_samples"] += 1
                continue
            x: Row | None
            problem: str | None
            try:
                x = self._features(sample)
            except Exception as exc:  # the user's student_input on this payload
                x, problem = None, f"student_input failed: {type(exc).__name__}: {exc}"
            else:
                problem = self._problem(x)
                if problem == "non-finite":
                    self.counters["nonfinite_samples"] += 1
                    continue
            if problem is None and np.shape(sample.teacher) != n_classes:
                problem = f"a teacher over {np.size(sample.teacher)} classes for a student of {n_classes[0]}"
            if problem is not None:
                self.counters["invalid_samples"] += 1
                if self.counters["invalid_samples"] == 1:  # once: the counter tells how many followed
                    log.warning("distiller dropped a sample it cannot train on (%s); see counters['invalid_samples']",
                                problem)
                continue
            assert x is not None
            if sample.x is None and isinstance(x, np.ndarray) and not np.isfinite(x).all():  # computed here
                self.counters["nonfinite_samples"] += 1
                continue
            usable.append((sample, x))
        return usable

    # -- one step -------------------------------------------------------------------------------------------
    def step(self, timeout_s: float = 0.0, linger_s: float = 0.0) -> int:
        """Take up to ``batch_size`` fresh samples (waiting at most ``timeout_s`` for the first and ``linger_s``
        more for the batch to fill), drop (and count) any that cannot train the student (NaN/inf, wrong width: see
        ``_usable``), set a share aside for the holdout, train one mini-batch (plus replay), acknowledge the
        samples, and run the gate every ``eval_every`` steps. Returns the number of fresh samples consumed (0 when
        none waited)."""
        return self._step(timeout_s, linger_s)[0]

    def _step(self, timeout_s: float, linger_s: float) -> tuple[int, float | None]:
        """``step``, also telling how many seconds the fresh optimizer step computed for (None when none was
        taken): the busy time the background loop paces, which leaves out the wait for samples."""
        with self._take_lock:  # wait for samples without the training lock
            taken = self.buffer.take(self.config.batch_size, timeout_s, linger_s)
        if not taken.samples:
            return 0, None
        with self._lock:
            started = self._timer()
            steps_before = self.counters["steps"] + self.counters["replay_steps"]
            train: list[tuple[Sample, Row]] = []
            for sample, x in self._usable(taken.samples):  # the dropped ones are never trained on nor replayed
                share = self.config.holdout_share
                if share > 0 and len(self._holdout) < self.config.min_holdout:  # warm-up: fill the holdout sooner
                    share = max(share, self.config.warmup_share)
                if self._rng.random() < share:
                    self._holdout.append((x, int(sample.label)))
                    self.counters["holdout"] += 1
                else:
                    train.append((sample, x))
            trained = False
            if train:
                cfg = self.config
                n_replay = math.ceil(cfg.replay_share * len(train) / (1.0 - cfg.replay_share))
                replay = self._usable(self.buffer.replay(n_replay)) if n_replay else []
                trained = self._train(train + replay, replay_only=False)
                if trained:
                    self.buffer.reservoir.add(s for s, _ in train)  # a batch that blew up is not replayed either
                self.counters["trained"] += len(train)  # fresh samples consumed by training (replay not counted)
                self.counters["replayed"] += len(replay)
            # only now, and before the lock is released: a crash before this line leaves the samples pending for
            # redelivery, and no gate (from any thread) sees weights trained on unacknowledged samples
            self.buffer.ack(taken)
            self._maybe_gate(steps_before)
            return len(taken.samples), (self._timer() - started if trained else None)

    def replay_step(self) -> bool:
        """One optimizer step on reservoir samples only. False if the reservoir holds less than a batch."""
        with self._lock:
            batch = self.buffer.replay(self.config.batch_size)
            if len(batch) < self.config.batch_size:
                return False
            usable = self._usable(batch)
            if not usable:
                return False
            steps_before = self.counters["steps"] + self.counters["replay_steps"]
            self._train(usable, replay_only=True)
            self._maybe_gate(steps_before)
            return True

    def _train(self, batch: Sequence[tuple[Sample, Row]], *, replay_only: bool) -> bool:
        """One optimizer step on (sample, features) pairs; False (weights untouched, counted) when the loss or the
        gradient is not finite."""
        model = self._ensure_model()
        cfg = self.config
        samples = [s for s, _ in batch]
        rows = [x for _, x in batch]
        teacher = torch.from_numpy(teacher_logits(samples))
        labels = torch.tensor(
            [s.truth if (cfg.use_truth and s.truth is not None) else s.label for s in samples], dtype=torch.int64
        )
        sparse = _sparse_first_layer(model, rows, self._table(model, rows))
        if sparse is None:
            self._sync()
        logits = model(torch.from_numpy(self._stack(rows))) if sparse is None else sparse[2]
        loss = distill_loss(logits, teacher, labels, temperature=cfg.temperature, alpha=cfg.alpha,
                            mse_weight=cfg.mse_weight)
        assert self._optimizer is not None
        self._optimizer.zero_grad(set_to_none=True)
        if not torch.isfinite(loss):
            self.counters["skipped_nonfinite"] += 1
            return False
        loss.backward()  # type: ignore[no-untyped-call]
        clipped = [p for p in model.parameters() if p.grad is not None] + ([sparse[1]] if sparse else [])
        norm = nn.utils.clip_grad_norm_(clipped, cfg.grad_clip if cfg.grad_clip > 0 else float("inf"))
        if not torch.isfinite(norm):  # finite loss, non-finite gradient: skip too, weights stay as they were
            self._optimizer.zero_grad(set_to_none=True)
            self.counters["skipped_nonfinite"] += 1
            return False
        self._optimizer.step()
        if sparse is not None:
            assert sparse[1].grad is not None and self._rows is not None
            self._optimizer.step_rows(self._rows[0], self._rows[1], self._rows[2], sparse[0], sparse[1].grad)
            self._dirty = True
        self.counters["replay_steps" if replay_only else "steps"] += 1
        return True

    def _maybe_gate(self, steps_before: int) -> None:
        total = self.counters["steps"] + self.counters["replay_steps"]
        if total != steps_before and total % self.config.eval_every == 0:
            self._gate()

    # -- gate and promotion ---------------------------------------------------------------------------------
    def holdout(self) -> tuple[np.ndarray, np.ndarray]:
        """The current holdout: features (n, input_dim) and teacher hard labels (n,)."""
        with self._lock:
            return self._holdout_arrays()

    def _holdout_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        if not self._holdout:
            return np.zeros((0, self.spec.input_dim), dtype=np.float32), np.zeros(0, dtype=np.int64)
        xs, ys = zip(*self._holdout)
        return self._stack(xs), np.asarray(ys, dtype=np.int64)

    def gate(self) -> GateResult:
        """Score candidate and serving student on the holdout; promote when the gate says so."""
        with self._lock:  # never while a step changes the weights (a promotion snapshots them)
            return self._gate()

    def _gate(self) -> GateResult:
        model = self._ensure_model()
        self._sync()
        rows = [x for x, _ in self._holdout]
        y = np.asarray([label for _, label in self._holdout], dtype=np.int64)
        serving_module, _ = self.tier.snapshot()
        model.eval()
        cand = self._predict(model, rows) == y
        model.train()
        serv = self._predict(serving_module, rows) == y
        step = self.counters["steps"] + self.counters["replay_steps"]
        result = judge(step, cand, serv, y, self.config.gate)
        self.gates.append(result)
        if result.promote:
            self._promote(result, rows, y)
        return result

    def _predict(self, module: nn.Module, rows: Sequence[Row]) -> np.ndarray:
        """Argmax class of each row, a chunk at a time: sparse rows through only the first-layer columns they
        touch (the serving student through its numpy export when it has one), dense rows through the module."""
        if not rows:
            return np.zeros(0, dtype=np.int64)
        served, forward = getattr(self.tier, "_numpy", (None, None))
        if forward is not None and served is module and all(isinstance(r, tuple) for r in rows):
            return np.asarray(forward.logits_sparse(rows).argmax(1))
        out = []
        with torch.inference_mode():
            for i in range(0, len(rows), 256):
                chunk = rows[i:i + 256]
                table = self._rows[0] if self._rows is not None and module is self._model else None
                sparse = _sparse_first_layer(module, chunk, table, grad=False)
                logits = module(torch.from_numpy(self._stack(chunk))) if sparse is None else sparse[2]
                out.append(logits.argmax(1).numpy())
        return np.concatenate(out)

    def _promote(self, result: GateResult, rows: Sequence[Row], y: np.ndarray) -> None:
        cfg = self.config
        snapshot = copy.deepcopy(self.model).eval()
        if not all(torch.isfinite(p).all() for p in snapshot.parameters()):
            self.counters["skipped_nonfinite"] += 1  # never publish such weights
            return
        served, float_module, spec, int8, variant = snapshot, snapshot, self.spec, False, "float"
        if cfg.int8 or cfg.prune > 0:
            c = compress(snapshot, self.spec, self._stack(rows), y,  # type: ignore[arg-type]  # build_student's
                         int8=cfg.int8, prune=cfg.prune, tolerance=cfg.tolerance)
            chosen = next(v for v in c.variants if v.name == c.chosen)
            if chosen.agreement - result.agreement_serving >= cfg.margin:  # else serve the float candidate
                served, float_module, spec, int8, variant = c.module, c.float_module, c.spec, c.int8, c.chosen
        if self.store is not None:
            version = self.store.publish(
                float_module.state_dict(), spec, int8=int8, step=result.step, agreement=result.agreement_candidate,
                agreement_before=result.agreement_serving, variant=variant, n=result.n,
                samples_trained=self.counters["trained"],
            )
        else:
            version = f"d{len(self.events) + 1}"
        self.tier.swap_student(served, spec, version)
        event = PromotionEvent(result.step, self.counters["trained"], result.n, result.agreement_serving,
                               result.agreement_candidate, version, variant, self.clock())
        self.events.append(event)
        log.info("promoted student %s at step %d: agreement %.3f -> %.3f (%s)", version, event.step,
                 event.agreement_before, event.agreement_after, variant)
        if self.on_promote is not None:
            self.on_promote(event)

    def summary(self) -> dict[str, Any]:
        """Plain counters and the latest gate, for reports."""
        last = self.gates[-1] if self.gates else None
        return {**self.counters, "promotions": len(self.events), "version": self.tier.version,
                "holdout_size": len(self._holdout),
                "last_gate": None if last is None else {"step": last.step, "n": last.n,
                                                         "serving": last.agreement_serving,
                                                         "candidate": last.agreement_candidate}}
