"""The comparison table: always-base, always-distilled (the final student), always-full and the router, measured
on the scored inputs only.

Accuracy and mean cost per request; cost reduction against always-full on the same inputs; latency p50/p99 per
request (each always-X tier called one request at a time; the router's own end-to-end latency, routing included);
memory (bytes the loaded model holds in RAM: traced while reloading a numpy model from its bundle, parameter bytes
for the torch student, plus the in-memory result cache for the router, traced on sample entries) and model size
(bytes on disk: the bundle, or the student's safetensors).
"""

from __future__ import annotations

import dataclasses
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from tierswitch.demo.assemble import Assembled
from tierswitch.demo.models import model_from_bundle
from tierswitch.demo.store import ModelStore
from tierswitch.demo.stream import StreamLog
from tierswitch.demo.training import TrainedModel
from tierswitch.demo.workloads import Workload

__all__ = ["TableRow", "compare", "cost_shares", "scored_probs"]

ROLES = ("base", "distilled", "full")


@dataclass
class TableRow:
    name: str
    accuracy: float
    mean_cost: float
    cost_reduction: float
    p50_us: float
    p99_us: float
    memory_bytes: int
    size_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _traced_bytes(store: ModelStore, trained: TrainedModel) -> int:
    """RAM held by the model once loaded: reload its bundle under tracemalloc (numpy reports its buffers)."""
    with _tracing() as traced:
        before = traced()
        found = store.load(trained.name, trained.key)
        model = model_from_bundle(*found) if found is not None else None
        held = traced() - before
        del model, found
    return max(0, held)


@contextmanager
def _tracing() -> Iterator[Callable[[], int]]:
    """Trace Python allocations in the block (unless something traces already); yields a reader of the bytes
    traced. Tracing stops however the block ends: left on, it would slow every allocation for the rest of the run."""
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    try:
        yield lambda: tracemalloc.get_traced_memory()[0]
    finally:
        if not was_tracing:
            tracemalloc.stop()


def _memory_cache_bytes(workload: Workload, asm: Assembled, sample: int = 400) -> int:
    """RAM of the in-memory result cache: the traced cost of ``sample`` entries like the real ones, times the number
    of entries it holds (0 for Redis, whose memory is the server's)."""
    from tierswitch.cache.memory import MemoryCache

    if not isinstance(asm.cache, MemoryCache) or not len(asm.cache):
        return 0
    fam = max(workload.families, key=lambda f: len(f.data.classes))  # the widest probability vectors
    proto = asm.router.tiers[fam.names["full"]].predict_one(fam.data.test_x[0])
    probe = MemoryCache(max_entries=sample + 1)
    with _tracing() as traced:
        before = traced()
        for i in range(sample):
            entry = dataclasses.replace(proto, probs=np.array(proto.probs))  # each entry owns its probabilities
            probe.set(f"{i:032x}", entry)
        per_entry = (traced() - before) / sample
    return int(per_entry * len(asm.cache))


def _student_sizes(student: Any) -> tuple[int, int]:
    from safetensors.torch import save

    from tierswitch.distill.compress import module_bytes

    module = student.module
    state = {k: v.detach().contiguous() for k, v in module.state_dict().items() if hasattr(v, "detach")}
    try:
        disk = len(save(state))
    except Exception:  # a quantized module's packed params are not plain tensors: report what is served
        disk = module_bytes(module)
    return module_bytes(module), disk


def scored_probs(workload: Workload, asm: Assembled) -> dict[str, Any]:
    """Every tier's answer, probabilities and single-request latency on every scored input (for the table and
    the frontier sweep). Returns arrays aligned with the scored items."""
    scored = [it for it in workload.items if it.phase == "score"]
    out: dict[str, Any] = {"correct": {}, "confidence": {}, "latency_us": {}, "cost": {}}
    for role in ROLES:
        correct, conf, lat, cost = [], [], [], []
        for it in scored:
            fam = workload.families[it.family]
            tier = asm.students[it.family] if role == "distilled" else asm.router.tiers[fam.names[role]]
            pred = tier.predict_one(it.payload)
            correct.append(pred.output == it.truth)
            conf.append(pred.confidence if pred.confidence is not None else 0.0)
            lat.append(pred.latency_s * 1e6)
            cost.append(asm.prices[tier.name])
        out["correct"][role] = np.array(correct, dtype=bool)
        out["confidence"][role] = np.array(conf)
        out["latency_us"][role] = np.array(lat)
        out["cost"][role] = np.array(cost)
    return out


def cost_shares(log: StreamLog) -> dict[str, float]:
    """The router's cost as a share of always-full's, over the whole stream, its last fifth and the scored part."""
    rows = log.rows
    n = len(rows)

    def share(part: list[dict[str, Any]]) -> float:
        full = sum(r["full_cost"] for r in part)
        return float(sum(r["cost"] for r in part) / full) if full else float("nan")

    return {
        "whole_stream": share(rows),
        "last_fifth": share(rows[n - max(1, n // 5):]),
        "first_fifth": share(rows[: max(1, n // 5)]),
        "scored": share([r for r in rows if r["phase"] == "score"]),
    }


def compare(workload: Workload, asm: Assembled, log: StreamLog, store: ModelStore,
            probs: dict[str, Any]) -> list[TableRow]:
    """The four rows of the comparison table, on the scored inputs."""
    full_cost = float(np.mean(probs["cost"]["full"]))
    rows: list[TableRow] = []
    for role in ROLES:
        if role == "distilled" and not asm.distillers:
            continue
        memory = size = 0
        for i, fam in enumerate(workload.families):
            if role == "distilled":
                m, d = _student_sizes(asm.students[i])
            else:
                trained = fam.base if role == "base" else fam.full
                m, d = _traced_bytes(store, trained), trained.disk_bytes
            memory, size = memory + m, size + d
        lat = probs["latency_us"][role]
        cost = float(np.mean(probs["cost"][role]))
        rows.append(TableRow(f"always-{role}", float(np.mean(probs["correct"][role])), cost, 1.0 - cost / full_cost,
                             float(np.percentile(lat, 50)), float(np.percentile(lat, 99)), memory, size))
    scored = [r for r in log.rows if r["phase"] == "score"]
    lat = np.array([r["latency_us"] for r in scored])
    cost = float(np.mean([r["cost"] for r in scored]))
    cache_bytes = _memory_cache_bytes(workload, asm)
    rows.append(TableRow(
        "router", float(np.mean([r["correct"] for r in scored])), cost, 1.0 - cost / full_cost,
        float(np.percentile(lat, 50)), float(np.percentile(lat, 99)),
        sum(r.memory_bytes for r in rows) + cache_bytes, sum(r.size_bytes for r in rows),
    ))
    return rows
