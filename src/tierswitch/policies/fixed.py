"""``Fixed``: always the same tier (when it is capable; otherwise abstain)."""

from __future__ import annotations

from typing import Any

from tierswitch.policies.base import Policy
from tierswitch.types import Decision, RoutingContext

__all__ = ["Fixed"]


class Fixed(Policy):
    """Always route to ``tier``; abstains when the capability filter removed it, so ``Fixed("base") | Cascade()``
    sends what base cannot take elsewhere."""

    def __init__(self, tier: str) -> None:
        self.tier = tier
        self._decision = Decision(tier, f"fixed: always {tier}", self)

    def decide(self, ctx: RoutingContext) -> Decision:
        if self.tier in ctx.capable:
            return self._decision
        return Decision(None, f"fixed tier {self.tier!r} cannot take this input", self)

    def tier_names(self) -> set[str]:
        return {self.tier}

    def to_config(self) -> dict[str, Any]:
        return {"kind": "fixed", "tier": self.tier}

    def __repr__(self) -> str:
        return f"Fixed({self.tier!r})"
