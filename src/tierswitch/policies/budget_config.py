"""Settings of the ``BudgetController``: its targets, the checks on its parameters, and its config round trip.

``check_settings`` validates and normalises the constructor's parameters (every error names ``policy.<key>``);
``from_config`` reads the ``budget`` policy kind from a config mapping and ``to_config`` writes it back. The
control law itself lives in ``tierswitch.policies.budget``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from tierswitch.errors import ConfigError
from tierswitch.policies.quantile import counters_from_config
from tierswitch.validation import describe, finite, positive

if TYPE_CHECKING:
    from tierswitch.policies.budget import BudgetController

__all__ = ["TARGETS", "BudgetSettings", "check_settings", "from_config", "to_config"]

TARGETS = ("full_share", "mean_cost", "cost_rate", "latency_p95")
_FIELDS = {"target", "value", "tiers", "window", "score_window", "gain", "integral_gain", "lower_split", "burst",
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


def to_config(controller: BudgetController) -> dict[str, Any]:
    """``controller``'s parameters as a ``budget`` policy config (what ``from_config`` reads back)."""
    config: dict[str, Any] = {
        "kind": "budget", "target": controller.target, "value": controller.value, "tiers": list(controller.tiers),
        "window": controller.window, "score_window": controller.score_window, "gain": controller.gain,
        "integral_gain": controller.integral_gain, "lower_split": list(controller.lower_split),
        "min_samples": controller.min_samples, "seed": controller.seed,
    }
    if controller.burst is not None:
        config["burst"] = controller.burst
    counters = controller.counters.to_config()
    if counters is not None:
        config["counters"] = counters
    return config


def from_config(config: Mapping[str, Any], field: str = "policy") -> BudgetController:
    """The ``budget`` policy kind: ``{"kind": "budget", "target": "full_share", "value": 0.3, "tiers": [...],
    "window": 1000, ..., "counters": {"kind": "redis", "name": ..., "url": ...}}``. Unknown keys are refused;
    every error names ``field`` plus the key at fault."""
    from tierswitch.policies.budget import BudgetController
    from tierswitch.validation import only_keys, rebased, section

    config = section(config, field)
    only_keys(config, field, _FIELDS | {"kind"})
    for name in ("target", "value"):
        if name not in config:
            raise ConfigError(f"{field}.{name}", f"is required for a budget policy (targets: {list(TARGETS)})")
    kwargs = {k: v for k, v in config.items() if k not in ("kind", "target", "value", "counters")}
    tiers = kwargs.get("tiers", [])
    if not isinstance(tiers, list) or not all(isinstance(t, str) for t in tiers):
        raise ConfigError(f"{field}.tiers", f"must be a list of tier names, got {describe(tiers)}")
    try:
        counters = counters_from_config(config.get("counters"))
        return BudgetController(config["target"], config["value"], counters=counters, **kwargs)
    except ConfigError as exc:
        raise rebased(exc, "policy", field) from exc
