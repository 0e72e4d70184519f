"""What the router tells the world after a request: decision records for hooks, and outcomes for learning policies."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from tierswitch.policies.base import FirstOf, Policy
from tierswitch.routing.state import Hook, RoutingState
from tierswitch.types import Decision, DecisionRecord, Routed, RoutingContext

if TYPE_CHECKING:
    from tierswitch.cache.base import Cache

__all__ = ["Hook", "decision_record", "emit", "learner_hooks", "learners", "send_feedback"]


def learners(policy: Policy) -> Iterator[Policy]:
    """The leaf policies of a composed tree (``FirstOf`` only: an A/B test forwards to its own arms)."""
    stack = [policy]
    while stack:
        p = stack.pop()
        if isinstance(p, FirstOf):
            stack.extend(reversed(p.policies))
        else:
            yield p


def learner_hooks(policy: Policy) -> list[Hook]:
    """The ``observe`` methods of the policies that learn from outcomes: they see every decision record."""
    hooks: list[Hook] = []
    for learner in learners(policy):
        observe = getattr(learner, "observe", None)
        if observe is not None and observe not in hooks:
            hooks.append(observe)
    return hooks


def send_feedback(policy: Policy, request_id: int, reward: float | None, quality: float | None) -> bool:
    """Hand a request's outcome to every learning policy of the tree; True when some policy knew the request."""
    known = False
    for learner in learners(policy):
        fn = getattr(learner, "feedback", None)
        if fn is not None:
            known = bool(fn(request_id, reward, quality=quality)) or known
    return known


def decision_record(routed: Routed, ctx: RoutingContext, decision: Decision, cache: Cache | None) -> DecisionRecord:
    """The record of one answered request, with the cache's running totals when there is a cache."""
    return DecisionRecord(
        routed.request_id, ctx.request, ctx.features, routed.score, ctx.capable, decision.tier, decision.reason,
        decision.propensity, routed.tier, routed.cost, routed.latency_s, routed.cached, dict(ctx.predictions),
        routed.trace, ctx.meta,
        None if cache is None else {k: cache.stats.total(k) for k in ("hits", "misses", "errors")},
    )


def emit(state: RoutingState, routed: Routed, ctx: RoutingContext, decision: Decision) -> None:
    """Hand the record of ``routed`` to the router's hooks (called only when there are hooks)."""
    state.emit_record(decision_record(routed, ctx, decision, state.cache))
