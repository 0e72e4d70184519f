"""``@tiered``: turn an existing inference function into the ``full`` tier of a router, keeping its call sites."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from tierswitch.policies.base import Policy
from tierswitch.policies.cascade import Cascade
from tierswitch.router import Router
from tierswitch.tiers.base import Tier
from tierswitch.tiers.callable import CallableTier

__all__ = ["tiered"]

F = TypeVar("F", bound=Callable[..., Any])
DEFAULT_COSTS: Mapping[str, float] = {"base": 1.0, "distilled": 2.0, "full": 10.0}


def _as_tier(name: str, target: Tier | Callable[[Any], Any], costs: Mapping[str, float]) -> Tier:
    if isinstance(target, Tier):
        return target
    return CallableTier(name, target, cost=costs.get(name, 0.0))


def tiered(
    *,
    base: Tier | Callable[[Any], Any] | None = None,
    distilled: Tier | Callable[[Any], Any] | None = None,
    policy: Policy | None = None,
    costs: Mapping[str, float] = DEFAULT_COSTS,
    **router_options: Any,
) -> Callable[[F], F]:
    """Decorate ``predict(x)`` so it becomes the ``full`` tier behind a router; the decorated function still takes
    ``x`` and returns an output, so existing call sites keep working. The router is on ``.router``.

    ``base``/``distilled`` are tiers or plain functions (returning an output, or ``(output, probs)`` so a cascade
    can read their confidence); functions are priced by ``costs`` (relative units; pass Tiers for real prices).
    The default policy is a cascade that accepts the cheaper tiers' answers at confidence >= 0.8.
    """

    def wrap(fn: F) -> F:
        tiers = [
            _as_tier(name, target, costs)
            for name, target in (("base", base), ("distilled", distilled), ("full", fn))
            if target is not None
        ]
        chosen = policy or Cascade({t.name: 0.8 for t in tiers[:-1]})
        router = Router(tiers, chosen, **router_options)

        @functools.wraps(fn)
        def routed_call(x: Any, **meta: Any) -> Any:
            return router(x, **meta).output

        routed_call.router = router  # type: ignore[attr-defined]
        return routed_call  # type: ignore[return-value]

    return wrap
