"""Finishing a request the cache (or an identical request in flight) answered."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from tierswitch.routing.admission import Admitted
from tierswitch.routing.hooks import emit
from tierswitch.routing.miss import context
from tierswitch.routing.state import RoutingState
from tierswitch.types import Decision, Prediction, Routed, TraceStep

__all__ = ["finish_hit", "finish_shared"]


def finish_hit(state: RoutingState, admitted: Admitted, hit: Prediction, meta: Any, started: float) -> Routed:
    """The ``Routed`` for a cache hit: it cost nothing."""
    trace = (TraceStep("cache_hit", hit.tier, f"version {hit.tier_version}", hit.confidence),)
    routed = Routed(
        hit.output, hit.tier, 0.0, time.perf_counter() - started, True, None, trace, hit.confidence, hit.probs,
        hit.tier_version, admitted.request.digest, next(state.request_ids), hit.usage,
    )
    state.stats.served_one(hit.tier, cache_hit=True)
    if state.hooks:
        emit(state, routed, context(state, admitted, meta), Decision(hit.tier, "cache hit"))
    return routed


def finish_shared(state: RoutingState, admitted: Admitted, shared: Routed, meta: Any, started: float) -> Routed:
    """The ``Routed`` for a request that waited on an identical one in flight: its answer, at no cost."""
    step = TraceStep("cache_hit", shared.tier, "shared with an identical request in flight", shared.confidence)
    routed = dataclasses.replace(shared, cost=0.0, cached=True, latency_s=time.perf_counter() - started,
                                 score=None, trace=(step,), request_id=next(state.request_ids))
    state.stats.served_one(routed.tier, cache_hit=True)
    if state.hooks:
        emit(state, routed, context(state, admitted, meta), Decision(routed.tier, "in flight"))
    return routed
