"""``Router.astream``: the same steps as ``acall``, with the answering tier's text passed through as it arrives.

Which call streams: the miss loop asks for a streamed call only where the answer cannot be refused any more (no
stronger capable tier is left, or the deciding policy never escalates). Earlier cascade steps are ordinary calls,
since their answer must be complete before the policy can accept it; when such an answer is accepted, its whole
text is sent as one delta. A cache hit is sent the same way. A tier failure before the first delta falls back as
usual; after it, the stream ends with ``StreamInterrupted`` and nothing is cached. Streams do not join single
flight (a waiter would see no deltas); they are cached once complete, like any answer.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from tierswitch.errors import StreamInterrupted, TierFailure
from tierswitch.routing.admission import admit
from tierswitch.routing.effects import AsyncShell, Call, Lookup
from tierswitch.routing.hits import finish_hit
from tierswitch.routing.miss import route_miss
from tierswitch.routing.state import RoutingState
from tierswitch.types import Prediction, Routed

__all__ = ["route_stream"]


async def route_stream(state: RoutingState, x: Any, modality: str | None, meta: Any) -> AsyncIterator[str | Routed]:
    """Text deltas (``str``), then exactly one ``Routed``. Closing the iterator early cancels the upstream call."""
    shell = AsyncShell(state)
    started = time.perf_counter()
    admitted = admit(state, x, modality)
    if admitted.cache_keys and state.cache is not None:
        hit = await Lookup(admitted.request.digest, admitted.cache_keys).arun(shell)
        if hit is not None:
            routed = finish_hit(state, admitted, hit, meta, started)
            if isinstance(routed.output, str) and routed.output:
                yield routed.output
            yield routed
            return
    steps = route_miss(state, admitted, meta, started, stream=True)
    streamed_by: str | None = None  # the tier whose text already went out delta by delta
    try:
        effect = next(steps)
        while True:
            if isinstance(effect, Call) and effect.stream and state.tiers[effect.tier].streams:
                result: Prediction | TierFailure | None = None
                sent = False
                try:
                    async for item in state.tiers[effect.tier].astream(effect.payload, effect.length):
                        if isinstance(item, str):
                            if item:
                                sent = True
                                yield item
                        else:
                            result = item
                    if result is None:
                        raise TierFailure(effect.tier, "its stream ended without a complete answer")
                except TierFailure as failure:
                    if sent:
                        state.stats.add(failures=1, failed_requests=1)
                        state.failure_log.note(state.stats, effect.tier, failure, None)  # counted and logged
                        raise StreamInterrupted(effect.tier, f"after part of the answer was sent: {failure}") \
                            from failure
                    result = failure
                if sent:
                    streamed_by = effect.tier
                effect = steps.send(result)
            else:
                effect = steps.send(await effect.arun(shell))
    except StopIteration as done:
        routed = done.value
    if streamed_by != routed.tier and isinstance(routed.output, str) and routed.output:
        yield routed.output
    yield routed
