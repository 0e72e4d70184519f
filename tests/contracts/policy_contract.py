"""The contract every Policy keeps, run against each implementation by tests/test_policies.py.

A policy (1) returns a Decision whose tier is one of ctx.capable, or None to abstain; (2) is deterministic for the
same context (randomised policies declare it and log a propensity in (0, 1]); (3) survives a config round trip when
it has a config form; (4) only names tiers it declares in tier_names().
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from tierswitch.config import policy_from_config
from tierswitch.policies.base import Policy
from tierswitch.tiers import CallableTier
from tierswitch.types import Features, Prediction, Request, RoutingContext

TIER_NAMES = ("base", "distilled", "full")
TIERS = {name: CallableTier(name, lambda x: x, cost=float(i + 1)) for i, name in enumerate(TIER_NAMES)}


def make_context(score: float, capable: tuple[str, ...] = TIER_NAMES, length: int = 10) -> RoutingContext:
    return RoutingContext(
        Request("payload", "text", "digest"), Features("text", length, chars=4 * length, tokens=length), score,
        capable, TIERS,
    )


class PolicyContract:
    """Subclass with ``make_policy`` returning a fresh policy over TIER_NAMES."""

    make_policy: Callable[[], Policy]
    randomised = False

    def contexts(self) -> list[RoutingContext]:
        scores = np.linspace(0.0, 1.0, 21)
        capables = [TIER_NAMES, ("distilled", "full"), ("full",), ("base", "full")]
        return [make_context(float(s), c) for s in scores for c in capables]

    def test_decides_a_capable_tier_or_abstains(self) -> None:
        policy = self.make_policy()
        for ctx in self.contexts():
            decision = policy.decide(ctx)
            assert decision.tier is None or decision.tier in ctx.capable, (decision, ctx.capable)
            assert isinstance(decision.reason, str) and decision.reason
            assert 0.0 < decision.propensity <= 1.0

    def test_deterministic_for_the_same_context(self) -> None:
        if self.randomised:
            return
        policy = self.make_policy()
        for ctx in self.contexts():
            assert policy.decide(ctx).tier == policy.decide(ctx).tier

    def test_names_only_declared_tiers(self) -> None:
        policy = self.make_policy()
        assert policy.tier_names() <= set(TIER_NAMES)

    def test_config_round_trip_decides_the_same(self) -> None:
        policy = self.make_policy()
        try:
            config = policy.to_config()
        except NotImplementedError:
            return
        rebuilt = policy_from_config(config)
        assert rebuilt.to_config() == config
        for ctx in self.contexts():
            assert rebuilt.decide(ctx).tier == policy.decide(ctx).tier

    def test_accept_returns_a_bool_for_every_tier(self) -> None:
        policy = self.make_policy()
        ctx = make_context(0.5)
        for name in TIER_NAMES:
            for confidence in (None, 0.1, 0.99):
                prediction = Prediction("y", name, "1", 1.0, 0.0, None, confidence)
                assert policy.accept(ctx, prediction) in (True, False)
