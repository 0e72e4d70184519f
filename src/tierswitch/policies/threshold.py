"""``Threshold``: score bands map to tiers."""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from typing import Any

from tierswitch.errors import ConfigError
from tierswitch.policies.base import Policy
from tierswitch.types import Decision, RoutingContext

__all__ = ["Threshold"]


class Threshold(Policy):
    """Route by complexity score: ``score < cuts[0]`` goes to ``tiers[0]``, ``cuts[0] <= score < cuts[1]`` to
    ``tiers[1]``, ..., and ``score >= cuts[-1]`` to ``tiers[-1]``.

    When the chosen tier cannot take the input, the next more expensive capable tier serves it (never a cheaper
    one: the score said this input needs at least that much); if none is, the policy abstains.
    """

    def __init__(self, tiers: Sequence[str], cuts: Sequence[float]) -> None:
        tiers = tuple(tiers)
        cuts = tuple(float(c) for c in cuts)
        if len(tiers) < 2:
            raise ConfigError("policy.tiers", f"needs at least 2 tiers, got {list(tiers)}")
        if len(cuts) != len(tiers) - 1:
            raise ConfigError("policy.cuts", f"needs {len(tiers) - 1} cut(s) for {len(tiers)} tiers, got {len(cuts)}")
        if any(not math.isfinite(c) for c in cuts) or list(cuts) != sorted(cuts):
            raise ConfigError("policy.cuts", f"must be finite and non-decreasing, got {list(cuts)}")
        if len(set(tiers)) != len(tiers):
            raise ConfigError("policy.tiers", f"names must be unique, got {list(tiers)}")
        self.tiers = tiers
        self.cuts = cuts
        self._reasons = tuple(self._band_reason(i) for i in range(len(tiers)))

    def _band_reason(self, i: int) -> str:
        low = "-inf" if i == 0 else f"{self.cuts[i - 1]:g}"
        high = "inf" if i == len(self.cuts) else f"{self.cuts[i]:g}"
        return f"score in [{low}, {high})"

    def decide(self, ctx: RoutingContext) -> Decision:
        band = bisect.bisect_right(self.cuts, ctx.score)
        capable = ctx.capable
        for i in range(band, len(self.tiers)):
            if self.tiers[i] in capable:
                reason = self._reasons[band] if i == band else f"{self._reasons[band]}; {self.tiers[band]} incapable"
                return Decision(self.tiers[i], reason, self)
        return Decision(None, f"{self._reasons[band]}: no tier from {self.tiers[band]!r} up can take this input", self)

    def tier_names(self) -> set[str]:
        return set(self.tiers)

    def to_config(self) -> dict[str, Any]:
        return {"kind": "threshold", "tiers": list(self.tiers), "cuts": list(self.cuts)}

    def __repr__(self) -> str:
        return f"Threshold(tiers={list(self.tiers)}, cuts={list(self.cuts)})"
