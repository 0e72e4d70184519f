"""The one place the gateway gets a streamed answer: text deltas, then one final ``Routed``.

When the router has ``astream`` (the async core's streaming path) it is used for every route. Until then: a route
pinned to a streaming tier streams that tier directly (``tier.astream``; the answer is not cached), and any other
route routes with ``acall`` and sends the whole answer as one delta.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from tierswitch.errors import TierFailure
from tierswitch.router import Router
from tierswitch.serve.shapes import text_of
from tierswitch.types import Prediction, Routed, TraceStep

__all__ = ["stream_answer"]


async def stream_answer(router: Router, payload: Any, pinned: str | None, **meta: Any) -> AsyncIterator[str | Routed]:
    astream = getattr(router, "astream", None)
    if astream is not None:
        async for item in astream(payload, **meta):
            yield item
        return
    tier = router.tiers.get(pinned) if pinned is not None else None
    if tier is not None and not getattr(tier, "streams", False):
        tier = getattr(tier, "inner", tier)  # a reliability guard around a streaming tier: stream the tier itself
    if tier is not None and getattr(tier, "streams", False):
        started = time.perf_counter()
        final: Prediction | None = None
        tier_stream: Any = tier.astream  # type: ignore[attr-defined]  # streaming tiers have it (Tier.streams)
        async for item in tier_stream(payload):
            if isinstance(item, str):
                yield item
            else:
                final = item
        if final is None:
            raise TierFailure(tier.name, "the stream ended without its final answer")
        trace = (TraceStep("call", tier.name, "streamed", final.confidence, final.latency_s),)
        yield Routed(final.output, tier.name, final.cost, time.perf_counter() - started, False, None, trace,
                     final.confidence, None, final.tier_version, "", 0, final.usage)
        return
    routed = await router.acall(payload, **meta)
    yield text_of(routed.output)
    yield routed
