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
from tierswitch.demo.tiers import PRICE_TABLE, ModelTier, measure_latency_us, price_for
from tierswitch.demo.workloads import Family, Workload
from tierswitch.policies.cascade import Cascade
from tierswitch.router import Router
from tierswitch.tiers.base import Capabilities, CostModel, Tier

__all__ = ["Assembled", "SHADOW_RATE", "assemble"]

# The demo uses the library's defaults (``DistillConfig()``, the worker process of ``distill_into``); only the
# shadow share of the cheaper tiers' answers sent to the full tier is stated here.
SHADOW_RATE = 0.1


@dataclass
class Assembled:
    """The router and the distillation machinery of one family each (same order as ``workload.families``)."""

    router: Router
    cache: Cache
    students: list[Any]
    buffers: list[Any]
    feeders: list[Any]
    distillers: list[Any]  # the trainers (ProcessTrainer), with ``events`` and ``summary()``
    cost_source: str
    prices: dict[str, float]
    measured_us: dict[str, float] = field(default_factory=dict)
    redis_namespace: str | None = None
    runs: list[Any] = field(default_factory=list)  # the Distillation of each family (distill_into)

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
    from tierswitch.distill import DistillConfig
    from tierswitch.distill.attach import distill_into
    from tierswitch.distill.student import student_tier

    built: list[tuple[Family, dict[str, Tier]]] = []
    for fam in workload.families:
        caps = Capabilities.of(fam.modality)
        classes = fam.data.classes
        tiers: dict[str, Tier] = {
            "base": ModelTier(fam.names["base"], fam.base.model, classes, capabilities=caps, version=fam.base.key),
            "distilled": student_tier(fam.student_spec, name=fam.names["distilled"], seed=seed,
                                      capabilities=caps, version="0", cost=PRICE_TABLE["distilled"]),
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
    students, feeders, distillers, runs = [], [], [], []
    for i, (fam, tiers) in enumerate(built):
        student = tiers["distilled"]
        students.append(student)
        if not distill:
            continue
        run = distill_into(router, fam.names["distilled"], teacher=fam.names["full"], shadow_rate=SHADOW_RATE,
                           seed=seed + i, config=DistillConfig(seed=seed + i), start=False)
        runs.append(run)
        feeders.append(run.feeder)
        distillers.append(run.trainer)
    return Assembled(router, cache, students, [], feeders, distillers, cost_source, prices, measured, namespace,
                     runs)
