"""One request, top down: admit, look up, single flight or miss loop. Shared by the sync and async cores."""

from __future__ import annotations

import time
from typing import Any

from tierswitch.routing.admission import admit
from tierswitch.routing.effects import Lookup, Steps
from tierswitch.routing.flight import Flight
from tierswitch.routing.hits import finish_hit
from tierswitch.routing.miss import route_miss
from tierswitch.routing.state import RoutingState
from tierswitch.types import Routed

__all__ = ["route_one"]


def route_one(state: RoutingState, x: Any, modality: str | None, meta: Any) -> Steps[Routed]:
    """The steps of ``router(x)``: each one once, in order."""
    started = time.perf_counter()
    admitted = admit(state, x, modality)
    flights = state.single_flight
    epoch = flights.completed if flights is not None else 0  # read before the lookup: see routing.flight
    if admitted.cache_keys:  # an answer that may be cached (and so shared)
        if state.cache is not None:
            hit = yield Lookup(admitted.request.digest, admitted.cache_keys)
            if hit is not None:
                return finish_hit(state, admitted, hit, meta, started)
        if flights is not None:  # identical misses in flight share one computation
            routed: Routed = yield Flight(flights, admitted, meta, started, epoch)
            return routed
    return (yield from route_miss(state, admitted, meta, started))
