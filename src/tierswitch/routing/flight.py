"""The router's single flight step: concurrent identical misses share one computation.

The leader routes the miss as usual; the others get its answer as a hit that cost nothing. The router's
``single_flight`` (a ``SingleFlight``, or a ``RedisSingleFlight`` for a fleet) decides who leads.
"""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING, Any

from tierswitch.types import Decision, Features, Request, Routed, TraceStep

if TYPE_CHECKING:
    from tierswitch.router import Router

__all__ = ["route_in_flight"]


def route_in_flight(
    router: Router, request: Request, features: Features, capable: tuple[str, ...], meta: Any, started: float,
    epoch: int,
) -> Routed:
    """Route a miss through ``router.single_flight``. The leader first rechecks the cache when some flight finished
    after this request's own lookup (``epoch``), since an identical request may have cached its answer in between.
    """
    own_hit: Routed | None = None  # what this request's own recheck served, already counted and recorded
    recheck = None
    cache = router.cache
    if cache is not None:

        def recheck() -> Routed | None:
            nonlocal own_hit
            hit = cache.lookup(request.digest, [(n, router.tiers[n].version) for n in reversed(capable)])
            if hit is not None:
                own_hit = router._finish_hit(request, features, capable, hit, meta, started)
            return own_hit

    outcome = router.single_flight.do_outcome(
        f"{request.digest}:{request.modality}",
        lambda: router._route_miss(request, features, capable, meta, started),
        recheck,
        epoch,
    )
    # A RedisSingleFlight reports "waiter" when this request waited on another process and then found that
    # process's answer with its own recheck: that answer is already this request's finished hit.
    if outcome.role != "waiter" or outcome.value is own_hit:
        return outcome.value  # type: ignore[no-any-return]
    shared: Routed = outcome.value
    step = TraceStep("cache_hit", shared.tier, "shared with an identical request in flight", shared.confidence)
    routed = dataclasses.replace(shared, cost=0.0, cached=True, latency_s=time.perf_counter() - started,
                                 score=None, trace=(step,), request_id=next(router._ids))
    router.stats.served_one(routed.tier, cache_hit=True)
    if router.hooks:
        router._emit(routed, router._context(request, features, capable, meta), Decision(routed.tier, "in flight"))
    return routed
