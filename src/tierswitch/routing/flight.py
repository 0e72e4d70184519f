"""Single flight as an effect: concurrent identical misses share one computation.

The leader routes the miss as usual; the others get its answer as a hit that cost nothing. The router's
``single_flight`` (a ``SingleFlight``, or a ``RedisSingleFlight`` for a fleet) decides who leads. The leader first
rechecks the cache when some flight finished after this request's own lookup (``epoch``), since an identical
request may have cached its answer in between.
"""

from __future__ import annotations

from typing import Any

from tierswitch.cache.singleflight import Outcome, SingleFlight
from tierswitch.errors import AllTiersFailed
from tierswitch.routing.admission import Admitted
from tierswitch.routing.effects import AsyncShell, Effect, Lookup, Steps, SyncShell
from tierswitch.routing.hits import finish_hit, finish_shared
from tierswitch.routing.miss import route_miss
from tierswitch.routing.state import RoutingState
from tierswitch.types import Routed

__all__ = ["Flight"]


class Flight(Effect):
    """Route ``admitted`` through the single flight; the result is the request's ``Routed``."""

    __slots__ = ("flights", "admitted", "meta", "started", "epoch", "own_hit", "led")

    def __init__(self, flights: SingleFlight, admitted: Admitted, meta: Any, started: float, epoch: int) -> None:
        self.flights = flights
        self.admitted = admitted
        self.meta = meta
        self.started = started
        self.epoch = epoch
        self.own_hit: Routed | None = None  # what this request's own recheck served, already counted and recorded
        self.led = False

    @property
    def key(self) -> str:
        request = self.admitted.request
        return f"{request.digest}:{request.modality}"

    def _miss(self, state: RoutingState) -> Steps[Routed]:
        self.led = True
        return route_miss(state, self.admitted, self.meta, self.started)

    def _recheck(self, state: RoutingState) -> Steps[Routed | None]:
        hit = yield Lookup(self.admitted.request.digest, self.admitted.cache_keys)
        if hit is not None:
            self.own_hit = finish_hit(state, self.admitted, hit, self.meta, self.started)
        return self.own_hit

    def _finish(self, state: RoutingState, outcome: Outcome) -> Routed:
        # A RedisSingleFlight reports "waiter" when this request waited on another process and then found that
        # process's answer with its own recheck: that answer is already this request's finished hit.
        if outcome.role != "waiter" or outcome.value is self.own_hit:
            return outcome.value  # type: ignore[no-any-return]
        return finish_shared(state, self.admitted, outcome.value, self.meta, self.started)

    def _count_shared_failure(self, state: RoutingState) -> None:
        # The leader counted its own failure; a waiter that receives it is one more failed request.
        if not self.led:
            state.stats.add(failed_requests=1, shared_failures=1)

    def run(self, shell: SyncShell) -> Routed:
        state = shell.state
        recheck = (lambda: shell.run(self._recheck(state))) if state.cache is not None else None
        try:
            outcome = self.flights.do_outcome(self.key, lambda: shell.run(self._miss(state)), recheck, self.epoch)
        except AllTiersFailed:
            self._count_shared_failure(state)
            raise
        return self._finish(state, outcome)

    async def arun(self, shell: AsyncShell) -> Routed:
        state = shell.state

        async def compute() -> Routed:
            return await shell.run(self._miss(state))

        async def recheck() -> Routed | None:
            return await shell.run(self._recheck(state))

        try:
            outcome = await self.flights.ado_outcome(self.key, compute, recheck if state.cache is not None else None,
                                                     self.epoch)
        except AllTiersFailed:
            self._count_shared_failure(state)
            raise
        return self._finish(state, outcome)
