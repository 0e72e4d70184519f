"""Reliability: per-tier timeouts, retries with backoff and jitter, circuit breakers and fallback plans.

Wrap a tier in ``Guarded`` and every way it gives up is a ``TierFailure`` the router already falls back from::

    from tierswitch.reliability import CircuitBreaker, Guarded

    full = Guarded(full, timeout_s=2.0, retries=2, breaker=CircuitBreaker(failures=5, window_s=30, cooldown_s=10))

Nothing here starts a thread or touches the network until a guarded tier is first called.
"""

from tierswitch.reliability.breaker import CircuitBreaker
from tierswitch.reliability.config import guard_settings, guard_tiers_from_config
from tierswitch.reliability.errors import CircuitOpen, TierSaturated, TransientTierError
from tierswitch.reliability.fallback import FallbackPlan, default_next, fallback_from_config
from tierswitch.reliability.guarded import Guarded, guard_all
from tierswitch.reliability.pool import CallPool
from tierswitch.reliability.retry import Backoff, transient_predicate

__all__ = [
    "Backoff",
    "CallPool",
    "CircuitBreaker",
    "CircuitOpen",
    "FallbackPlan",
    "Guarded",
    "TierSaturated",
    "TransientTierError",
    "default_next",
    "fallback_from_config",
    "guard_all",
    "guard_settings",
    "guard_tiers_from_config",
    "transient_predicate",
]
