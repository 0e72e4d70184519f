"""Put a workload's tiers behind one ``Router``: cascade policy, cache, and per-family online distillation.

Every family gets a student tier, a ``MemoryBuffer``, a ``DistillFeeder`` (full-tier answers and shadow samples,
off the request path) attached to the router, and a background ``Distiller``. In a mixed workload every feeder sees
every request and skips those its full tier cannot accept (counted as ``unaccepted``), so a shadow call never sends
an image to the text model.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from typing import Any

from tierswitch.cache.base import Cache
from tierswitch.cache.memory import MemoryCache
from tierswitch.demo.tiers import ModelTier, measure_latency_us, price_for
from tierswitch.demo.workloads import Family, Workload
from tierswitch.policies.cascade import Cascade
from tierswitch.router import Router
from tierswitch.tiers.base import Capabilities, CostModel, Tier

__all__ = ["Assembled", "DISTILL_SETTINGS", "assemble"]

# Tuned for a stream of thousands of requests on 2 cores: gate early and often, so a useful student serves soon.
# A stream of ~10k requests yields only ~3k teacher answers, too few fresh steps for the student to converge: the
# trainer takes ``replay_ratio`` reservoir-only steps after each fresh one, while the traffic goes on. The stream
# waits for the trainer at the end of each window, so the trainer may run flat out (``max_busy`` 1.0) instead of
# the library's default pacing, which protects serving latency in a real deployment.
DISTILL_SETTINGS: dict[str, Any] = {
    "batch_size": 32, "lr": 3e-3, "temperature": 2.0, "alpha": 0.5, "use_truth": False, "eval_every": 20,
    "holdout_share": 0.1, "holdout_size": 600, "min_holdout": 100, "margin": 0.01, "z": 2.0, "replay_share": 0.5,
    "replay_ratio": 14.0, "idle_replay": 2, "num_threads": 1, "max_busy": 1.0,
}
SHADOW_RATE = 0.1


@dataclass
class Assembled:
    """The router and the distillation machinery of one family each (same order as ``workload.families``)."""

    router: Router
    cache: Cache
    students: list[Any]
    buffers: list[Any]
    feeders: list[Any]
    distillers: list[Any]
    cost_source: str
    prices: dict[str, float]
    measured_us: dict[str, float] = field(default_factory=dict)
    redis_namespace: str | None = None

    @property
    def cost_unit(self) -> str:
        return "credits/request (price table)" if self.cost_source == "table" else "µs/request (measured latency)"


def _make_cache(redis_url: str | None) -> tuple[Cache, str | None]:
    if not redis_url:
        return MemoryCache(), None
    from tierswitch.cache.redis import RedisCache

    namespace = f"tierswitch-demo-{os.getpid()}-{uuid.uuid4().hex[:8]}"  # a fresh namespace: no stale answers
    return RedisCache(redis_url, namespace=namespace, ttl_s=3600.0), namespace


def assemble(
    workload: Workload, *, seed: int, cost_source: str = "table", redis_url: str | None = None, distill: bool = True
) -> Assembled:
    """Build the tiers, router, feeders and distillers of ``workload`` (the distillers are not started yet)."""
    from tierswitch.distill import DistillConfig, DistillFeeder, MemoryBuffer
    from tierswitch.distill.student import StudentSpec, student_tier
    from tierswitch.distill.trainer import Distiller

    built: list[tuple[Family, dict[str, Tier]]] = []
    for fam in workload.families:
        caps = Capabilities.of(fam.modality)
        classes = fam.data.classes
        spec = StudentSpec(fam.student_dim, fam.student_hidden, len(classes), classes)
        tiers: dict[str, Tier] = {
            "base": ModelTier(fam.names["base"], fam.base.model, classes, capabilities=caps, version=fam.base.key),
            "distilled": student_tier(spec, fam.student_input, name=fam.names["distilled"], seed=seed,
                                      capabilities=caps, version="0", num_threads=1),
            "full": ModelTier(fam.names["full"], fam.full.model, classes, capabilities=caps, version=fam.full.key),
        }
        built.append((fam, tiers))
    measured: dict[str, float] = {}
    if cost_source == "measured":
        for fam, tiers in built:
            sample = fam.data.train_x[:200]  # timing inputs come from the learn split, never the scored one
            for tier in tiers.values():
                measured[tier.name] = measure_latency_us(tier.predict_one, sample)
    prices: dict[str, float] = {}
    for _, tiers in built:
        for role, tier in tiers.items():
            by_role = {role: measured[tier.name]} if cost_source == "measured" else None
            prices[tier.name] = price_for(role, cost_source, by_role)
            tier.cost_model = CostModel(per_call=prices[tier.name])
    # the router wants its tiers cheapest first: by role (base, distilled, full), then by price within a role
    order = sorted(((prices[t.name], ["base", "distilled", "full"].index(r), t) for _, ts in built
                    for r, t in ts.items()), key=lambda e: (e[1], e[0]))
    thresholds = {fam.names[r]: fam.thresholds[r] for fam, _ in built for r in ("base", "distilled")}
    if not distill:  # without a student, the cascade goes from base straight to full
        order = [e for e in order if e[1] != 1]
        thresholds = {fam.names["base"]: fam.thresholds["base"] for fam, _ in built}
    cache, namespace = _make_cache(redis_url)
    router = Router([e[2] for e in order], Cascade(thresholds), cache=cache)
    students, buffers, feeders, distillers = [], [], [], []
    for i, (fam, tiers) in enumerate(built):
        student = tiers["distilled"]
        students.append(student)
        if not distill:
            continue
        config = DistillConfig(**{**DISTILL_SETTINGS, **fam.distill, "seed": seed + i})
        buffer = MemoryBuffer(capacity=20_000, reservoir=4000, seed=seed + i)
        feeder = DistillFeeder(buffer, fam.student_input, full_tier=fam.names["full"],
                               shadow_rate=SHADOW_RATE, seed=seed + i, classes=fam.data.classes, queue_size=20_000)
        feeders.append(feeder.attach(router))
        buffers.append(buffer)
        distillers.append(Distiller(student, buffer, config))
    return Assembled(router, cache, students, buffers, feeders, distillers, cost_source, prices, measured, namespace)
