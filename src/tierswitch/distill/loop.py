"""The ``Distiller``'s background loop: when to take fresh samples, when to replay, when to sleep on the buffer.

``TrainingLoop`` is a mixin of ``tierswitch.distill.trainer.Distiller``, which supplies the steps (``_step`` for a
fresh batch, ``replay_step`` for a reservoir-only one) and the ``config``, ``buffer`` and ``counters`` they use. This
module only schedules those steps: in a background thread (``start``/``stop``, with its own torch thread budget so
serving keeps its cores) or in the caller's thread (``run_until``, as the distill worker process does).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import torch

from tierswitch.errors import DistillError

if TYPE_CHECKING:
    from tierswitch.distill.buffer import Buffer
    from tierswitch.distill.config import DistillConfig

__all__ = ["TrainingLoop"]

log = logging.getLogger("tierswitch.distill")
_L = TypeVar("_L", bound="TrainingLoop")


class TrainingLoop:
    """Runs a ``Distiller``'s steps until told to stop (see the module docstring for what the host provides)."""

    if TYPE_CHECKING:  # provided by the Distiller this is mixed into
        config: DistillConfig
        buffer: Buffer
        counters: dict[str, int]

        def _step(self, timeout_s: float, linger_s: float) -> tuple[int, float | None]: ...

        def replay_step(self) -> bool: ...

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._replay_due = 0.0  # replay-only steps owed by fresh steps (replay_ratio each), paid even under traffic
        self._replay_credit = 0.0  # extra replay-only steps allowed while no fresh samples wait (up to idle_replay)
        self._idle = threading.Condition()
        self._empty_takes = 0
        self._timer: Callable[[], float] = time.perf_counter  # measures busy time (tests inject a fake one)

    def start(self: _L) -> _L:
        """Train in a background thread until ``stop()``; returns ``self``."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="tierswitch-distiller", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the background thread after its current step."""
        self._stop.set()
        self.buffer.wake()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                raise DistillError(f"the distiller thread did not stop within {timeout_s}s")
            self._thread = None

    def run_until(self, should_stop: Callable[[], bool], *, pace: bool = False) -> None:
        """The loop the background thread (and the distill worker process) runs. After each fresh optimizer step
        it owes ``replay_ratio`` replay-only steps and pays them before the next take, so the replay share holds
        under steady traffic too; while no fresh samples wait it may replay more, up to ``idle_replay`` replay
        steps per fresh step in all; then it blocks on the buffer. With ``pace`` (the background thread) it pauses
        after each optimizer step so that steps take at most ``max_busy`` of the wall time (the time spent waiting
        for samples is idle, not busy)."""
        torch.set_num_threads(self.config.num_threads)  # this thread only: serving threads keep theirs
        cfg = self.config
        idle_extra = max(0.0, cfg.idle_replay - cfg.replay_ratio)
        pause_per_busy_s = (1.0 - cfg.max_busy) / cfg.max_busy if pace else 0.0
        while not should_stop():
            try:
                busy_s = self._one_round(idle_extra)
            except Exception as exc:  # a Redis hiccup or a bad sample must not kill the trainer
                self.counters["errors"] += 1
                log.exception("distiller step failed: %s", exc)
                self._stop.wait(1.0)
                continue
            if busy_s is not None and pause_per_busy_s:
                self._stop.wait(busy_s * pause_per_busy_s)

    def _one_round(self, idle_extra: float) -> float | None:
        """One scheduling decision: an owed replay step, a fresh step, an allowed idle replay, or an idle mark.
        Returns the seconds an optimizer step computed for (what ``max_busy`` paces), None when none ran."""
        cfg = self.config
        if self._replay_due >= 1.0 - 1e-9:  # owed replay first, even while fresh samples wait
            self._replay_due -= 1.0
            busy_s = self._timed_replay()
            if busy_s is None:
                self._replay_due = 0.0  # the reservoir holds less than a batch yet: nothing to replay
            return busy_s
        credit = self._replay_credit >= 1.0 - 1e-9
        consumed, busy_s = self._step(0.0 if credit else cfg.take_timeout_s, cfg.linger_s)
        if busy_s is not None:
            self._replay_due += cfg.replay_ratio
            self._replay_credit = min(self._replay_credit + idle_extra, 50.0 * cfg.idle_replay)
        if consumed:
            return busy_s
        if credit:
            self._replay_credit -= 1.0
            busy_s = self._timed_replay()
            if busy_s is None:
                self._replay_credit = 0.0
            return busy_s
        with self._idle:  # nothing fresh and no replay owed or allowed: the trainer is idle
            self._empty_takes += 1
            self._idle.notify_all()
        return None

    def _timed_replay(self) -> float | None:
        """``replay_step``, returning how long it took (None when the reservoir held too little to take it)."""
        started = self._timer()
        if not self.replay_step():
            return None
        return self._timer() - started

    def wait_idle(self, timeout_s: float = 30.0) -> bool:
        """Block until the background trainer is idle (no fresh sample, no replay owed or allowed) on a take that began
        after this call, so everything put before the call has been trained on; False on timeout."""
        with self._idle:
            start = self._empty_takes
            # two empty takes: the second one began after the first ended, hence after this call
            return self._idle.wait_for(lambda: self._empty_takes >= start + 2, timeout=timeout_s)

    def _run(self) -> None:
        self.run_until(self._stop.is_set, pace=True)
