"""Settings of the ``BudgetController``: its targets, its config keys and the checks on its parameters.

``check_settings`` validates and normalises the constructor's parameters (every error names ``policy.<key>``). The
control law, the policy and its config round trip (``from_config``/``to_config``) live in
``tierswitch.policies.budget``, which imports this module (never the reverse).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

from tierswitch.errors import ConfigError
from tierswitch.validation import describe, finite, positive

__all__ = ["FIELDS", "TARGETS", "BudgetSettings", "check_settings"]

TARGETS = ("full_share", "mean_cost", "cost_rate", "latency_p95")
FIELDS = {"target", "value", "tiers", "window", "score_window", "gain", "integral_gain", "lower_split", "burst",
           "min_samples", "seed", "counters"}


class BudgetSettings(NamedTuple):
    """A ``BudgetController``'s checked parameters (``lower_split`` normalised to sum to 1)."""

    target: str
    value: float
    tiers: tuple[str, ...]
    window: int
    score_window: int
    gain: float
    integral_gain: float
    lower_split: tuple[float, ...]
    burst: float | None  # the token bucket's capacity; only for the cost_rate target
    min_samples: int
    seed: int


def check_settings(
    target: str, value: float, tiers: Sequence[str], window: int, score_window: int | None, gain: float,
    integral_gain: float, lower_split: Sequence[float] | None, burst: float | None, min_samples: int, seed: int,
) -> BudgetSettings:
    """The parameters of ``BudgetController`` checked and normalised; ``ConfigError`` names the first bad one."""
    if target not in TARGETS:
        raise ConfigError("policy.target", f"must be one of {list(TARGETS)}, got {describe(target)}")
    high = 1.0 if target == "full_share" else math.inf
    value = finite("policy.value", value, low=0.0, high=high, strict=target != "full_share")
    tiers = tuple(tiers)
    if len(tiers) < 2 or len(set(tiers)) != len(tiers):
        raise ConfigError("policy.tiers", f"needs at least 2 unique tier names, got {list(tiers)}")
    score_window = window if score_window is None else score_window
    for name, v in (("window", window), ("min_samples", min_samples), ("score_window", score_window)):
        positive(f"policy.{name}", v, integer=True)
    gain = finite("policy.gain", gain, low=0.0)
    integral_gain = finite("policy.integral_gain", integral_gain, low=0.0)
    split = [1.0] * (len(tiers) - 1) if lower_split is None else list(lower_split)
    if len(split) != len(tiers) - 1 or not all(
            isinstance(w, (int, float)) and not isinstance(w, bool) and math.isfinite(w) and w >= 0 for w in split
    ) or sum(split) <= 0:
        raise ConfigError("policy.lower_split", f"needs {len(tiers) - 1} non-negative weights, got {split}")
    if target == "cost_rate":
        burst = finite("policy.burst", 10.0 * value if burst is None else burst, low=0.0, strict=True)
    elif burst is not None:
        raise ConfigError("policy.burst", "only applies to the cost_rate target")
    return BudgetSettings(target, value, tiers, window, score_window, gain, integral_gain,
                          tuple(s / sum(split) for s in split), burst, min_samples, seed)
