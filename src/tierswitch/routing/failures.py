"""Failures a user pays for are visible: every tier failure is counted per tier and logged, rate-limited.

A tier that raises or returns a malformed answer makes the router fall back to another tier (often the expensive
one); that must never be silent. The ``tierswitch.router`` logger gets one WARNING per tier per ``every_s`` with
the count since the last one and the latest reason; ``RouterStats`` counts ``failures`` and
``failures_by_tier``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from tierswitch.errors import TierFailure
from tierswitch.routing.stats import RouterStats

__all__ = ["FailureLog"]

log = logging.getLogger("tierswitch.router")


class FailureLog:
    """Counts tier failures per tier and logs them at most once per tier every ``every_s`` seconds."""

    def __init__(self, every_s: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.every_s = every_s
        self._clock = clock
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._quiet: dict[str, int] = {}

    def note(self, stats: RouterStats, tier: str, failure: TierFailure, then: str | None) -> None:
        """Record that ``tier`` failed with ``failure``; ``then`` is the tier falling back in (None: none left)."""
        stats.failed(tier)
        now = self._clock()
        with self._lock:
            last = self._last.get(tier)
            if last is not None and now - last < self.every_s:
                self._quiet[tier] = self._quiet.get(tier, 0) + 1
                return
            self._last[tier] = now
            suppressed = self._quiet.pop(tier, 0)
        more = f" (+{suppressed} more since the last warning)" if suppressed else ""
        after = f"falling back to {then}" if then is not None else "no tier left to fall back to"
        log.warning("%s; %s%s", failure, after, more)
