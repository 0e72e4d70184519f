"""The narrow state the routing steps read: a structural ``Protocol`` the ``Router`` satisfies.

Step modules take a ``RoutingState`` instead of importing the router, so the routing core's import graph points one
way (router -> steps) and a step can be tested over any object with these attributes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Protocol

from tierswitch.types import DecisionRecord, TraceStep

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

    from tierswitch.cache.base import Cache
    from tierswitch.cache.singleflight import SingleFlight
    from tierswitch.estimator.base import Estimator
    from tierswitch.policies.base import Policy
    from tierswitch.reliability.fallback import FallbackPlan
    from tierswitch.routing.failures import FailureLog
    from tierswitch.routing.stats import LiveAgreement, RouterStats
    from tierswitch.tiers.base import Tier

__all__ = ["Hook", "RoutingState"]

#: A decision hook: called with the record of every answered request.
Hook = Callable[[DecisionRecord], None]


class RoutingState(Protocol):
    """What one request's steps need from the router that runs them."""

    tiers: dict[str, Tier]
    tier_order: tuple[str, ...]
    policy: Policy
    estimator: Estimator
    cache: Cache | None
    fallback: bool | FallbackPlan
    single_flight: SingleFlight | None
    max_input_bytes: int | None
    max_batch: int
    stats: RouterStats
    live_agreement: LiveAgreement
    failure_log: FailureLog
    hooks: list[Hook]
    request_ids: Iterator[int]
    capable_by_modality: dict[str, tuple[tuple[str, ...], int]]
    accepted_steps: dict[str, TraceStep]
    always_cacheable: frozenset[str]

    def executor(self) -> ThreadPoolExecutor:
        """The bounded pool that runs sync tiers for the async core."""
        ...

    def emit_record(self, record: DecisionRecord) -> None:
        """Hand a record to every hook."""
        ...
