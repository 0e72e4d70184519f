"""The ``Policy`` seam: choose a tier from the routing context.

Policies are small, immutable and composable: ``a | b`` asks ``a`` first and falls through to ``b`` when ``a``
abstains (returns a ``Decision`` whose tier is None). A policy may also take part in cascades: after a tier answers,
the router asks the deciding policy ``accept(ctx, prediction)``; False escalates to the next capable tier.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from tierswitch.types import Decision, Prediction, RoutingContext

__all__ = ["FirstOf", "Policy"]


class Policy(ABC):
    """Choose a tier for a request. Subclasses implement ``decide``; cascading ones also ``accept``."""

    @abstractmethod
    def decide(self, ctx: RoutingContext) -> Decision:
        """Pick one of ``ctx.capable`` (or abstain with ``Decision(None, reason)``)."""

    def accept(self, ctx: RoutingContext, prediction: Prediction) -> bool:
        """Whether ``prediction`` is good enough to return; False escalates. Non-cascading policies accept all."""
        return True

    def tier_names(self) -> set[str]:
        """Tier names this policy refers to, so a router can check them against its tiers at construction."""
        return set()

    def to_config(self) -> dict[str, Any]:
        """A plain-data description that ``tierswitch.config.policy_from_config`` turns back into this policy."""
        raise NotImplementedError(f"{type(self).__name__} has no config form")

    def __or__(self, other: Policy) -> Policy:
        return FirstOf((self, other))


class FirstOf(Policy):
    """The first child policy that does not abstain decides; ``a | b | c`` builds one flat ``FirstOf``."""

    policies: tuple[Policy, ...]

    def __init__(self, policies: tuple[Policy, ...]) -> None:
        flat: list[Policy] = []
        for policy in policies:
            flat.extend(policy.policies if isinstance(policy, FirstOf) else (policy,))
        self.policies = tuple(flat)

    def decide(self, ctx: RoutingContext) -> Decision:
        reasons = []
        for policy in self.policies:
            decision = policy.decide(ctx)
            if decision.tier is not None:
                return decision
            reasons.append(decision.reason)
        return Decision(None, "all composed policies abstained: " + "; ".join(reasons), self)

    def tier_names(self) -> set[str]:
        return set().union(*(p.tier_names() for p in self.policies))

    def to_config(self) -> dict[str, Any]:
        return {"kind": "first_of", "policies": [p.to_config() for p in self.policies]}

    def __repr__(self) -> str:
        return " | ".join(repr(p) for p in self.policies)
