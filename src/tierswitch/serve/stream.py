"""The one place the gateway gets a streamed answer: ``router.astream`` — text deltas as the answering tier
produces them (one delta for a cache hit), then one final ``Routed``. Cache, single flight, fallback and the
policy apply to streams as to plain requests (see ``tierswitch.routing.streaming``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from tierswitch.router import Router
from tierswitch.types import Routed

__all__ = ["stream_answer"]


async def stream_answer(router: Router, payload: Any, pinned: str | None, **meta: Any) -> AsyncIterator[str | Routed]:
    """``pinned`` names the tier of a pinned route (its router holds only that tier); kept for the access log."""
    async for item in router.astream(payload, **meta):
        yield item
