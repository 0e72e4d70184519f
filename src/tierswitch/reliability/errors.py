"""Errors of the reliability layer: two ``TierFailure`` subclasses and the marker users raise for transient errors.

``CircuitOpen`` and ``TierSaturated`` are ``TierFailure`` subclasses, so the router's fallback takes over exactly as
for any other failing tier. ``TransientTierError`` is deliberately *not* a ``TierswitchError``: a ``Tier`` wraps any
non-tierswitch exception of the user's function in ``TierFailure`` (cause chained), which is what lets a tier that
raises it still fall back cleanly when it is not guarded, while ``Guarded`` finds it in the cause chain and retries.
"""

from __future__ import annotations

from tierswitch.errors import TierFailure, TransientTierError

__all__ = ["CircuitOpen", "TierSaturated", "TransientTierError"]


class CircuitOpen(TierFailure):
    """The tier's circuit breaker is open: it failed too often recently, so it is not called until its cool-down
    ends. The router falls back to the next capable tier at once."""


class TierSaturated(TierFailure):
    """A guarded tier's bounded call queue is full (all its workers are busy, or stuck in calls that timed out),
    so a new call is refused at once instead of waiting out its timeout behind them. The router falls back to the
    next capable tier at once."""
