"""``Cascade``: try tiers cheapest first; accept a confident answer, else escalate."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tierswitch.policies.base import Policy
from tierswitch.types import Decision, Prediction, RoutingContext
from tierswitch.validation import finite

__all__ = ["Cascade"]


class Cascade(Policy):
    """Start at the cheapest capable tier (or at ``start``); accept a prediction when its confidence is at least
    ``thresholds[tier]``; otherwise the router escalates to the next capable tier.

    Tiers without a threshold accept every answer (the most expensive tier usually has none). A prediction with
    no confidence is accepted only by tiers without a threshold. When ``trust`` is set, a tier's threshold moves by
    ``trust * (target_agreement - live agreement)`` once the router knows that tier's live agreement with the full
    tier: a student that agrees less than expected must be more confident to be trusted.
    """

    def __init__(
        self,
        thresholds: Mapping[str, float],
        *,
        start: str | None = None,
        trust: float = 0.0,
        target_agreement: float = 0.9,
    ) -> None:
        for tier, value in thresholds.items():
            finite(f"policy.thresholds.{tier}", value, low=0.0, high=1.0)
        self.thresholds = dict(thresholds)
        self.start = start
        self.trust = finite("policy.trust", trust, low=0.0, high=1.0)
        # NaN here would clamp every moved threshold to 0 and accept any answer
        self.target_agreement = finite("policy.target_agreement", target_agreement, low=0.0, high=1.0)

    def decide(self, ctx: RoutingContext) -> Decision:
        capable = ctx.capable
        if not capable:
            return Decision(None, "cascade: no capable tier", self)
        if self.start is not None and self.start in capable:
            return Decision(self.start, f"cascade: start at {self.start}", self)
        return Decision(capable[0], "cascade: cheapest capable tier first", self)

    def threshold_for(self, ctx: RoutingContext, tier: str) -> float | None:
        """The confidence this tier's answer needs now (None: always accepted)."""
        base = self.thresholds.get(tier)
        if base is None or not self.trust:
            return base
        live = ctx.agreement.get(tier)
        if live is None:
            return base
        return min(1.0, max(0.0, base + self.trust * (self.target_agreement - live)))

    def accept(self, ctx: RoutingContext, prediction: Prediction) -> bool:
        needed = self.threshold_for(ctx, prediction.tier)
        if needed is None:
            return True
        return prediction.confidence is not None and prediction.confidence >= needed

    def tier_names(self) -> set[str]:
        names = set(self.thresholds)
        if self.start is not None:
            names.add(self.start)
        return names

    def to_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"kind": "cascade", "thresholds": dict(self.thresholds)}
        if self.start is not None:
            config["start"] = self.start
        if self.trust:
            config["trust"] = self.trust
            config["target_agreement"] = self.target_agreement
        return config

    def __repr__(self) -> str:
        return f"Cascade(thresholds={self.thresholds})"
