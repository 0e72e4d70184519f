"""``ABTest``: compare two policies on live traffic, split or in shadow, with confidence intervals per arm.

``mode="split"``: each request goes to arm ``b`` when a stable hash of its digest (salted) falls below
``share_b``, else to arm ``a``; the same input always lands in the same arm, in every process of a fleet.
``mode="shadow"``: arm ``a`` serves everything and arm ``b`` decides on every request without being served, so a
candidate is measured with no risk.

Register :meth:`observe` as a router decision hook (and send quality labels with :meth:`feedback`); the router's
records give each arm its cost and its accuracy against the full tier (known when the full tier served, or when
its answer is in the record as a shadow sample). :meth:`report` returns per-arm means with 95% intervals and the
difference b - a. Records and feedback are forwarded to the arm that served, so stateful arms (budgets, bandits)
keep learning.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from typing import Any, cast

from tierswitch.errors import ConfigError
from tierswitch.outputs import same_output
from tierswitch.policies.base import Policy
from tierswitch.types import Decision, DecisionRecord, Prediction, RoutingContext
from tierswitch.validation import describe, finite

__all__ = ["ABTest", "ArmStats"]

MODES = ("split", "shadow")
_Z = 1.959963984540054  # two-sided 95%


class ArmStats:
    """Running sums of one arm: requests, cost, agreement with the full tier, quality feedback, tier mix."""

    def __init__(self) -> None:
        self.n = 0
        self.cost = [0, 0.0, 0.0]  # count, sum, sum of squares (shadow arms price only what they would call first)
        self.agree = [0, 0]  # comparisons, agreed
        self.quality = [0, 0.0, 0.0]
        self.tiers: dict[str, int] = {}

    def add_cost(self, cost: float) -> None:
        self.cost[0] += 1
        self.cost[1] += cost
        self.cost[2] += cost * cost

    def add_quality(self, value: float) -> None:
        self.quality[0] += 1
        self.quality[1] += value
        self.quality[2] += value * value

    def summary(self) -> dict[str, Any]:
        return {"requests": self.n, "tiers": dict(self.tiers), "cost": _mean_ci(*self.cost),
                "agreement_with_full": _wilson(*self.agree), "quality": _mean_ci(*self.quality)}


def _mean_ci(n: float, total: float, squares: float) -> dict[str, Any]:
    if n == 0:
        return {"n": 0, "mean": None, "low": None, "high": None, "se": None}
    mean = total / n
    var = max(0.0, (squares - n * mean * mean) / (n - 1)) if n > 1 else 0.0
    se = math.sqrt(var / n)
    return {"n": n, "mean": mean, "low": mean - _Z * se, "high": mean + _Z * se, "se": se}


def _wilson(n: int, k: int) -> dict[str, Any]:
    """A Wilson score interval: sound for rates near 0 or 1, where the normal one is not."""
    if n == 0:
        return {"n": 0, "mean": None, "low": None, "high": None, "se": None}
    p = k / n
    denom = 1 + _Z * _Z / n
    centre = (p + _Z * _Z / (2 * n)) / denom
    half = _Z * math.sqrt(p * (1 - p) / n + _Z * _Z / (4 * n * n)) / denom
    return {"n": n, "mean": p, "low": max(0.0, centre - half), "high": min(1.0, centre + half),
            "se": math.sqrt(p * (1 - p) / n)}


class ABTest(Policy):
    """Split traffic between policies ``a`` and ``b`` (``share_b`` to b) or run ``b`` in shadow of ``a``."""

    def __init__(self, a: Policy, b: Policy, *, share_b: float = 0.5, mode: str = "split", salt: str = "",
                 full: str | None = None, max_pending: int = 100_000) -> None:
        if mode not in MODES:
            raise ConfigError("policy.mode", f"must be one of {list(MODES)}, got {describe(mode)}")
        share_b = finite("policy.share_b", share_b, low=0.0, high=1.0)
        if not isinstance(salt, str):
            raise ConfigError("policy.salt", f"must be a string, got {describe(salt)}")
        self.a, self.b = a, b
        self.share_b = float(share_b)
        self.mode = mode
        self.salt = salt
        self.full = full  # None: the most expensive tier of each request's context
        self.max_pending = max_pending
        self._lock = threading.Lock()
        self._stats = {"a": ArmStats(), "b": ArmStats()}
        self._shadow: dict[str, deque[tuple[str, float]]] = {}  # digest -> b's unserved choices (tier, priced cost)
        self._arm_of: OrderedDict[int, str] = OrderedDict()  # request id -> arm, for feedback

    def arm_of(self, digest: str) -> str:
        """The arm a request digest belongs to in split mode (stable across processes and restarts)."""
        h = hashlib.blake2b(f"{self.salt}\x00{digest}".encode(), digest_size=8).digest()
        return "b" if int.from_bytes(h, "big") / 2.0**64 < self.share_b else "a"

    def decide(self, ctx: RoutingContext) -> Decision:
        arm = self.arm_of(ctx.request.digest) if self.mode == "split" else "a"
        policy = self.a if arm == "a" else self.b
        inner = policy.decide(ctx)
        if self.mode == "shadow":
            shadow = self.b.decide(ctx)
            tier = shadow.tier if shadow.tier is not None else (ctx.capable[-1] if ctx.capable else None)
            if tier is not None:
                priced = ctx.tiers[tier].cost_model.cost(ctx.features.length) if tier in ctx.tiers else 0.0
                with self._lock:
                    self._shadow.setdefault(ctx.request.digest, deque()).append((tier, priced))
                    while len(self._shadow) > self.max_pending:
                        self._shadow.pop(next(iter(self._shadow)))
        return Decision(inner.tier, f"ab[{arm}]: {inner.reason}", inner.policy or policy, inner.propensity)

    def accept(self, ctx: RoutingContext, prediction: Prediction) -> bool:
        arm = self.arm_of(ctx.request.digest) if self.mode == "split" else "a"
        return (self.a if arm == "a" else self.b).accept(ctx, prediction)

    def observe(self, record: DecisionRecord) -> None:
        """Account one served request to its arm (and the shadow arm's would-be choice); forward it to the arm."""
        arm = self.arm_of(record.request.digest) if self.mode == "split" else "a"
        full_name = self.full or (record.capable[-1] if record.capable else record.tier)
        full = record.predictions.get(full_name)
        served = record.predictions.get(record.tier)
        with self._lock:
            stats = self._stats[arm]
            stats.n += 1
            stats.tiers[record.tier] = stats.tiers.get(record.tier, 0) + 1
            stats.add_cost(float(record.cost))
            if record.tier == full_name:
                stats.agree[0] += 1
                stats.agree[1] += 1
            elif full is not None and served is not None:
                stats.agree[0] += 1
                stats.agree[1] += same_output(served.output, full.output)
            self._arm_of[record.request_id] = arm
            while len(self._arm_of) > self.max_pending:
                self._arm_of.popitem(last=False)
            if self.mode == "shadow" and not record.cached:
                self._observe_shadow(record, full_name, full)
        target = getattr(self.a if arm == "a" else self.b, "observe", None)
        if target is not None:  # the arm sees the record as if it had decided alone (its own reason)
            prefix = f"ab[{arm}]: "
            reason = record.reason[len(prefix):] if record.reason.startswith(prefix) else record.reason
            target(dataclasses.replace(record, reason=reason))

    def _observe_shadow(self, record: DecisionRecord, full_name: str, full: Prediction | None) -> None:
        queue = self._shadow.get(record.request.digest)
        if not queue:
            return
        tier, priced = queue.popleft()
        if not queue:
            del self._shadow[record.request.digest]
        stats = self._stats["b"]
        stats.n += 1
        stats.tiers[tier] = stats.tiers.get(tier, 0) + 1
        stats.add_cost(priced)
        mine = record.predictions.get(tier)
        if tier == full_name:
            stats.agree[0] += 1
            stats.agree[1] += 1
        elif mine is not None and full is not None:
            stats.agree[0] += 1
            stats.agree[1] += same_output(mine.output, full.output)

    def feedback(self, request_id: int, reward: float | None = None, *, quality: float | None = None) -> bool:
        """A quality label (in [0, 1]) for a served request, counted for its arm and forwarded to it."""
        if (reward is None) == (quality is None):  # checked before counting: the arm would refuse both at once
            raise ValueError("feedback: pass exactly one of quality= or reward=")
        value = cast(float, quality if quality is not None else reward)  # exactly one is given: checked above
        if not math.isfinite(value):
            raise ValueError(f"feedback: the value must be finite, got {describe(value)}")
        with self._lock:
            arm = self._arm_of.get(request_id)
            if arm is None:
                return False
            self._stats[arm].add_quality(float(value))
        forward = getattr(self.a if arm == "a" else self.b, "feedback", None)
        if forward is not None:
            forward(request_id, reward, quality=quality)
        return True

    def report(self) -> dict[str, Any]:
        """Per-arm cost, agreement with the full tier and quality feedback (95% intervals), and b - a."""
        with self._lock:
            arms = {name: stats.summary() for name, stats in self._stats.items()}
        difference: dict[str, dict[str, float] | None] = {}
        for metric in ("cost", "agreement_with_full", "quality"):
            a, b = arms["a"][metric], arms["b"][metric]
            if a["mean"] is None or b["mean"] is None:
                difference[metric] = None
                continue
            se = math.sqrt(a["se"] ** 2 + b["se"] ** 2)
            delta = b["mean"] - a["mean"]
            difference[metric] = {"mean": delta, "low": delta - _Z * se, "high": delta + _Z * se}
        return {"mode": self.mode, "share_b": self.share_b, "arms": arms, "b_minus_a": difference}

    def tier_names(self) -> set[str]:
        return self.a.tier_names() | self.b.tier_names()

    def to_config(self) -> dict[str, Any]:
        config = {"kind": "ab", "a": self.a.to_config(), "b": self.b.to_config(), "share_b": self.share_b,
                  "mode": self.mode, "salt": self.salt}
        if self.full is not None:
            config["full"] = self.full
        return config

    @classmethod
    def from_config(cls, config: Mapping[str, Any], field: str = "policy", *,
                    build_policy: Callable[[Any, str], Policy] | None = None) -> ABTest:
        return from_config(config, field, build_policy=build_policy)

    def __repr__(self) -> str:
        return f"ABTest({self.a!r} vs {self.b!r}, mode={self.mode}, share_b={self.share_b:g})"


def from_config(config: Mapping[str, Any], field: str = "policy", *,
                build_policy: Callable[[Any, str], Policy] | None = None) -> ABTest:
    """The ``ab`` policy kind, one line of YAML:
    ``{kind: ab, a: {kind: threshold, ...}, b: {kind: cascade, ...}, share_b: 0.1, mode: split, salt: exp-7}``.

    ``build_policy(config, field)`` builds each arm from its config (``tierswitch.policy_from_config``, which the
    kind registry passes; this module never imports the registry, which sits a layer above). An arm that is already
    a ``Policy`` is taken as is."""
    from tierswitch.validation import only_keys, rebased, section

    config = section(config, field)
    only_keys(config, field, {"kind", "a", "b", "share_b", "mode", "salt", "full"})
    arms = []
    for arm in ("a", "b"):
        if arm not in config:
            raise ConfigError(f"{field}.{arm}", "is required: the policy config of this arm")
        arms.append(_arm(config[arm], f"{field}.{arm}", build_policy))
    a, b = arms
    full = config.get("full")
    if full is not None and not isinstance(full, str):
        raise ConfigError(f"{field}.full", f"must name a tier, got {describe(full)}")
    try:
        return ABTest(a, b, share_b=config.get("share_b", 0.5), mode=config.get("mode", "split"),
                      salt=config.get("salt", ""), full=full)
    except ConfigError as exc:
        raise rebased(exc, "policy", field) from exc


def _arm(value: Any, field: str, build_policy: Callable[[Any, str], Policy] | None) -> Policy:
    if isinstance(value, Policy):
        return value
    if build_policy is None:
        raise ConfigError(field, "is a policy config, and no build_policy was given: build the ab policy with "
                                 "tierswitch.policy_from_config, or pass build_policy=policy_from_config")
    return build_policy(value, field)
