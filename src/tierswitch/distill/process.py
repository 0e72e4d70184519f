"""Train beside serving, not under it: the ``Distiller`` in a local worker process.

A busy serving thread holds the GIL, so a trainer thread in the same process starves (the issue measured 148
samples trained in 10 s beside serving, 2,738 alone). ``ProcessTrainer`` runs the same trainer loop as the fleet's
``distill-worker`` (``Distiller.run_until``) in a child process started with the ``spawn`` context; only the sample
source and the weight sink differ:

    parent (serving)                                   child (training)
    DistillFeeder -> ProcessTrainer.put_many  --bytes-->  reader thread -> PriorityBuffer -> Distiller
    tier.swap_student <- verify (sha256, spec) <--bytes--  QueueSink.publish (safetensors)

Everything that crosses the process boundary is bytes this module encoded itself: samples as msgpack
(``encode_sample``), weights as safetensors with a sha256, control and stats as msgpack. The sample queue is bounded:
when it is full a sample is dropped and counted (``dropped``), never waited for. The child keeps its backlog in a
``PriorityBuffer``: when the trainer falls behind it trains first on samples where a cheaper tier disagreed with the
teacher and on low-confidence ones, and evicts confident agreements first.

``summary()`` reports the lag gauge (``waiting`` samples, ``lag_s`` seconds behind the newest arrival) and the
throughput (``samples_per_s`` over the last report, ``trained`` in all); a warning is logged when the backlog grows in
every report for ``warn_after`` reports in a row (the trainer cannot keep up: raise ``batch_size``, lower
``replay_ratio``, or add a fleet worker).
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing as mp
import os
import queue
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from tierswitch.distill.config import DistillConfig
from tierswitch.distill.gate import PromotionEvent
from tierswitch.distill.sample import Sample, encode_sample
from tierswitch.distill.student import StudentSpec, StudentTier
from tierswitch.errors import ConfigError, DistillError, WeightVerificationError
from tierswitch.serialization import pack, unpack
from tierswitch.validation import positive

__all__ = ["ProcessTrainer"]

log = logging.getLogger("tierswitch.distill")

_STATS_EVERY_S = 0.25


class ProcessTrainer:
    """Train ``tier``'s student in a child process; promoted weights come back and are swapped into ``tier``.

    It is a sample sink for ``DistillFeeder`` (``put_many``); at most ``queue_size`` samples wait to be sent
    (beyond that the oldest are dropped and counted in ``dropped``). ``start()`` spawns the child and waits until it is
    ready; ``finish()`` waits until everything sent so far is trained on (and the owed replay steps are paid);
    ``stop()`` ends the child (joined with a timeout, then terminated: never an orphan). ``nice`` > 0 lowers the
    worker's CPU priority (serving first under contention; training then lags on a busy machine). ``events`` lists the
    promotions served, ``rejected`` the versions that failed verification.
    """

    def __init__(
        self,
        tier: StudentTier,
        config: DistillConfig | None = None,
        *,
        spec: StudentSpec | None = None,
        queue_size: int = 8192,
        capacity: int = 20_000,
        reservoir: int = 4000,
        on_promote: Callable[[PromotionEvent], None] | None = None,
        warn_after: int = 20,
        start_method: str = "forkserver",
        nice: int = 0,
    ) -> None:
        positive("distill.queue_size", queue_size, integer=True)
        positive("distill.capacity", capacity, integer=True)
        positive("distill.warn_after", warn_after, integer=True)
        if start_method not in ("spawn", "forkserver"):
            raise ConfigError("distill.start_method", f"must be 'spawn' or 'forkserver', got {start_method!r}")
        self.tier = tier
        self.config = config or DistillConfig()
        self.spec = spec or tier.spec
        if self.spec.features is None and tier.student_input is None:
            raise ConfigError("student.features", "the worker process needs the spec's featuriser or features "
                                                   "computed before sending (DistillFeeder(student_input=...))")
        self.queue_size = queue_size
        self.capacity = capacity
        self.reservoir = reservoir
        self.on_promote = on_promote
        self.warn_after = warn_after
        self.start_method = start_method
        self.nice = nice
        self.events: list[PromotionEvent] = []
        self.rejected: set[str] = set()
        self.counters = {"sent": 0, "dropped": 0, "promotions": 0, "rejected": 0}
        self.stats: dict[str, Any] = {}
        self._token = uuid.uuid4().hex[:6]  # versions unique across attaches and restarts (cache keys hold them)
        self._proc: Any = None
        self._in: Any = None
        self._out: Any = None
        self._receiver: threading.Thread | None = None
        self._stopping = threading.Event()
        self._cond = threading.Condition()
        self._finished: set[int] = set()
        self._next_finish = 0
        self._ready = False
        self._closed = False
        self._pending: deque[bytes] = deque()
        self._control: deque[bytes] = deque()
        self._sender: threading.Thread | None = None
        self._grew = 0
        self._warned_at = 0

    # -- lifecycle ------------------------------------------------------------------------------------------
    def start(self, wait_s: float = 120.0) -> ProcessTrainer:
        """Spawn the worker and wait (at most ``wait_s``: it imports torch) until it takes samples."""
        if self._proc is not None:
            return self
        ctx: Any = mp.get_context(self.start_method)
        if self.start_method == "forkserver":  # one clean server per parent imports torch once; workers fork it
            ctx.set_forkserver_preload(["tierswitch.distill.trainer", "safetensors.torch"])
        self._in, self._out = ctx.Queue(maxsize=64), ctx.Queue()  # messages; each carries up to 1024 samples
        init = pack({"spec": self.spec.to_json(), "config": json.dumps(self.config.to_dict()),
                     "capacity": self.capacity, "reservoir": self.reservoir, "token": self._token,
                     "nice": self.nice})
        self._proc = ctx.Process(target=_worker_main, args=(init, self._in, self._out),
                                 name=f"tierswitch-distill-{self.tier.name}", daemon=True)
        self._proc.start()
        self._stopping.clear()
        self._closed = False
        self._receiver = threading.Thread(target=self._receive, name="tierswitch-distill-receiver", daemon=True)
        self._receiver.start()
        self._sender = threading.Thread(target=self._send, name="tierswitch-distill-sender", daemon=True)
        self._sender.start()
        with self._cond:
            if not self._cond.wait_for(lambda: self._ready or not self._proc.is_alive(), timeout=wait_s):
                self.stop()
                raise DistillError(f"the distill worker process did not start within {wait_s}s")
            if not self._ready:
                code = self._proc.exitcode
                self.stop()
                raise DistillError(f"the distill worker process exited at start-up (exit code {code})")
        return self

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.is_alive()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the worker after its current step and join it; terminate (then kill) it if it does not exit."""
        proc = self._proc
        if proc is None:
            return
        with self._cond:
            self._pending.clear()  # not trained on: stopping does not wait for a backlog
            self._control.append(b"C" + pack({"op": "stop"}))
            self._closed = True
            self._cond.notify_all()
        if self._sender is not None:
            self._sender.join(timeout_s)
            self._sender = None
        proc.join(timeout_s)
        if proc.is_alive():
            proc.terminate()
            proc.join(2.0)
            if proc.is_alive():
                proc.kill()
                proc.join(2.0)
        self._stopping.set()
        if self._receiver is not None:
            self._receiver.join(timeout_s)
            self._receiver = None
        for q in (self._in, self._out):
            q.close()
            q.join_thread()
        self._proc = None

    def finish(self, timeout_s: float = 120.0) -> bool:
        """Wait until every sample sent before this call was trained on (or held out) and the worker is idle, with
        its last promotion swapped in; False on timeout."""
        if not self.alive:
            return False
        with self._cond:
            self._next_finish += 1
            ticket = self._next_finish
        self._wait_sent(timeout_s)  # the sender ships the samples put before this call first
        self._control_message({"op": "finish", "id": ticket})
        with self._cond:
            return self._cond.wait_for(lambda: ticket in self._finished, timeout=timeout_s)

    # -- the sample sink (the DistillFeeder's buffer) -------------------------------------------------------
    def put_many(self, samples: Iterable[Sample]) -> int:
        """Hand samples to the sender thread, which ships whatever has accumulated as one message; when
        ``queue_size`` samples already wait to be sent, the oldest are dropped (counted): serving never blocks."""
        blobs = [encode_sample(s) for s in samples]
        if not blobs:
            return 0
        with self._cond:
            if self._proc is None or self._closed:
                self.counters["dropped"] += len(blobs)
                return 0
            self._pending.extend(blobs)
            excess = max(0, len(self._pending) - self.queue_size)
            for _ in range(excess):
                self._pending.popleft()
            self.counters["dropped"] += excess
            self.counters["sent"] += len(blobs) - excess  # what goes to the worker (the oldest went instead)
            self._cond.notify_all()
        return len(blobs) - excess

    def _wait_sent(self, timeout_s: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: not self._pending or self._closed, timeout=timeout_s)

    def _send(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._pending) or self._closed or bool(self._control))
                if self._control:
                    msg = self._control.popleft()
                elif self._pending:
                    n = min(len(self._pending), 1024)
                    msg = b"B" + pack([self._pending.popleft() for _ in range(n)])
                    self._cond.notify_all()  # finish() waits for the pending samples to be on their way
                else:
                    return  # closed and nothing left to send
            while not self._stopping.is_set():
                try:
                    self._in.put(msg, timeout=0.5)  # the queue is bounded: wait here, never in put_many
                    break
                except queue.Full:
                    if self._proc is None or not self._proc.is_alive():
                        return
                except (OSError, ValueError):
                    return

    def _control_message(self, msg: dict[str, Any]) -> None:
        with self._cond:
            self._control.append(b"C" + pack(msg))
            self._cond.notify_all()

    # -- what comes back ------------------------------------------------------------------------------------
    def _receive(self) -> None:
        while not self._stopping.is_set():
            try:
                data = self._out.get(timeout=0.2)
            except queue.Empty:
                if self._proc is not None and not self._proc.is_alive():
                    with self._cond:
                        self._cond.notify_all()
                continue
            except (OSError, ValueError, EOFError):
                return
            try:
                self._handle(unpack(data))
            except Exception as exc:  # a bad message loses itself, never the receiver
                log.exception("distill receiver: %s", exc)

    def _handle(self, msg: dict[str, Any]) -> None:
        kind = msg.get("kind")
        if kind == "weights":
            self._apply(msg)
        elif kind == "stats":
            self._on_stats(msg["stats"])
        elif kind in ("ready", "idle"):
            with self._cond:
                if kind == "ready":
                    self._ready = True
                else:
                    self._finished.add(int(msg["id"]))
                self._cond.notify_all()
        elif kind == "error":
            log.error("distill worker: %s", msg.get("message"))

    def _apply(self, msg: dict[str, Any]) -> None:
        version = str(msg["version"])
        try:
            served, spec = _verified_module(msg)
        except WeightVerificationError as exc:
            self.rejected.add(version)
            self.counters["rejected"] += 1
            log.error("not serving student %s: %s", version, exc)
            return
        self.tier.swap_student(served, spec, version)
        e = msg["event"]
        event = PromotionEvent(int(e["step"]), int(e["samples_trained"]), int(e["n"]), float(e["before"]),
                               float(e["after"]), version, str(e["variant"]), time.time())
        self.events.append(event)
        self.counters["promotions"] += 1
        log.info("promoted student %s (trained in the worker): agreement %.3f -> %.3f", version,
                 event.agreement_before, event.agreement_after)
        if self.on_promote is not None:
            self.on_promote(event)

    def _on_stats(self, stats: dict[str, Any]) -> None:
        previous = self.stats.get("waiting", 0)
        waiting = int(stats["waiting"]) + max(0, self.counters["sent"] - int(stats["received"]))
        stats = {**stats, "waiting": waiting}
        self.stats = stats
        self._grew = self._grew + 1 if waiting > previous and waiting > 4 * self.config.batch_size else 0
        if self._grew >= self.warn_after and waiting > 2 * self._warned_at:
            self._warned_at = waiting
            log.warning("the distill worker cannot keep up: %d samples waiting (%.1fs behind) and growing for %d "
                        "reports; it trains %.0f samples/s. Raise batch_size, lower replay_ratio, or run "
                        "`tierswitch distill-worker` processes on a Redis stream", waiting, stats.get("lag_s", 0.0),
                        self._grew, stats.get("samples_per_s", 0.0))

    @property
    def backlog_warning(self) -> bool:
        """True once the backlog warning has fired."""
        return self._warned_at > 0

    def summary(self) -> dict[str, Any]:
        """The worker's counters (as of its last report), the lag gauge, throughput, and what was sent/dropped."""
        s = dict(self.stats)
        return {**{k: s.get(k, 0) for k in ("steps", "replay_steps", "trained", "holdout", "errors",
                                             "invalid_samples", "nonfinite_samples")},
                "promotions": len(self.events), "version": self.tier.version, "mode": "process",
                "waiting": int(s.get("waiting", 0)), "lag_s": float(s.get("lag_s", 0.0)),
                "samples_per_s": float(s.get("samples_per_s", 0.0)), "sent": self.counters["sent"],
                "dropped": self.counters["dropped"], "rejected": self.counters["rejected"],
                "backlog_warning": self.backlog_warning, "alive": self.alive, "last_gate": s.get("last_gate")}


def _verified_module(msg: dict[str, Any]) -> tuple[Any, StudentSpec]:
    """The module the message's weights describe, after the same checks as ``WeightStore.load``."""
    from safetensors.torch import load as st_load

    from tierswitch.distill.compress import quantize_int8
    from tierswitch.distill.student import build_student
    from tierswitch.distill.weights import _check

    blob = bytes(msg["blob"])
    if hashlib.sha256(blob).hexdigest() != msg.get("sha256"):
        raise WeightVerificationError("checksum mismatch")
    try:
        spec = StudentSpec.from_json(msg["spec"])
        tensors = st_load(blob)
    except Exception as exc:  # corrupt bytes or spec
        raise WeightVerificationError(f"unreadable weights ({type(exc).__name__}: {exc})") from exc
    _check(tensors, spec, f"version {msg['version']}")
    module = build_student(spec)
    module.load_state_dict(tensors, strict=True)
    return (quantize_int8(module) if msg.get("int8") else module.eval()), spec


# ======================================================================================= the child process
class QueueSink:
    """The worker's weight sink: what ``WeightStore.publish`` does for a fleet, over the result queue."""

    def __init__(self, out: Any, token: str) -> None:
        self.out = out
        self.token = token
        self.n = 0
        self.pending_event: dict[str, Any] = {}

    def publish(self, state_dict: Any, spec: StudentSpec, *, int8: bool = False, **info: Any) -> str:
        import torch
        from safetensors.torch import save as st_save

        tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in state_dict.items()}
        blob = st_save(tensors)
        self.n += 1
        version = f"d{self.n}-{self.token}"
        self.out.put(pack({"kind": "weights", "version": version, "blob": blob,
                           "sha256": hashlib.sha256(blob).hexdigest(), "spec": spec.to_json(), "int8": bool(int8),
                           "event": {"step": info.get("step", 0), "samples_trained": info.get("samples_trained", 0),
                                     "n": info.get("n", 0), "before": info.get("agreement_before", 0.0),
                                     "after": info.get("agreement", 0.0), "variant": info.get("variant", "float")}}))
        return version


def _worker_main(init_bytes: bytes, inq: Any, outq: Any) -> None:
    """The child: rebuild the student from its spec, fill a PriorityBuffer from the queue, run the trainer loop."""
    import sys

    import numpy as np
    import torch

    from tierswitch.distill.buffer import PriorityBuffer
    from tierswitch.distill.sample import decode_sample
    from tierswitch.distill.student import student_tier
    from tierswitch.distill.trainer import Distiller

    sys.setswitchinterval(0.001)  # the reader thread gets the GIL back from the trainer's Python glue soon
    init = unpack(init_bytes)
    if init.get("nice"):
        try:
            os.nice(int(init["nice"]))  # the scheduler serves requests before training steps
        except OSError:
            pass
    spec = StudentSpec.from_json(init["spec"])
    config = DistillConfig.from_dict(json.loads(init["config"]))
    torch.set_num_threads(config.num_threads)

    def no_raw(payload: Any) -> np.ndarray:
        raise DistillError("a sample reached the worker without features and the spec has no featuriser")

    tier = student_tier(spec, None if spec.features is not None else no_raw, seed=config.seed, cost=0.0)
    buffer = PriorityBuffer(init["capacity"], reservoir=init["reservoir"], seed=config.seed)
    sink = QueueSink(outq, init["token"])
    distiller = Distiller(tier, buffer, config, spec=spec, store=sink)  # type: ignore[arg-type]
    stop = threading.Event()
    received = [0]

    def report() -> None:
        last_t, last_n = time.monotonic(), 0
        while not stop.wait(_STATS_EVERY_S):
            now = time.monotonic()
            done = distiller.counters["trained"] + distiller.counters["holdout"]
            rate = (done - last_n) / max(now - last_t, 1e-9)
            last_t, last_n = now, done
            outq.put(pack({"kind": "stats", "stats": {**distiller.summary(), "waiting": len(buffer),
                                                      "lag_s": buffer.lag_s(), "samples_per_s": rate,
                                                      "received": received[0]}}))

    def finish(ticket: int) -> None:
        distiller.wait_idle(timeout_s=600.0)
        outq.put(pack({"kind": "idle", "id": ticket}))

    def read() -> None:
        while not stop.is_set():
            try:
                data = inq.get(timeout=0.2)
            except queue.Empty:
                continue
            except (OSError, EOFError, ValueError):
                stop.set()
                break
            if data[:1] == b"B":
                samples = []
                for blob in unpack(data[1:]):
                    try:
                        samples.append(decode_sample(blob))
                    except DistillError:
                        distiller.counters["invalid_samples"] += 1
                received[0] += len(samples)
                buffer.put_many(samples)
            elif data[:1] == b"C":
                msg = unpack(data[1:])
                if msg.get("op") == "stop":
                    stop.set()
                elif msg.get("op") == "finish":
                    threading.Thread(target=finish, args=(int(msg["id"]),), daemon=True).start()
        buffer.wake()

    threads = [threading.Thread(target=read, daemon=True), threading.Thread(target=report, daemon=True)]
    for t in threads:
        t.start()
    _ = distiller.model  # build the optimizer now: its first construction imports torch._dynamo (seconds)
    outq.put(pack({"kind": "ready"}))
    try:
        distiller.run_until(stop.is_set)
    except Exception as exc:
        outq.put(pack({"kind": "error", "message": f"{type(exc).__name__}: {exc}"}))
        raise
    finally:
        stop.set()
        for t in threads:
            t.join(5.0)
        outq.close()
        outq.join_thread()
