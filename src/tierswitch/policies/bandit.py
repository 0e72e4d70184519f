"""``ContextualBandit``: learn online which tier to use from the request's features (disjoint LinUCB).

Each tier is an arm with its own ridge regression of reward on a small feature vector (bias, score, log length,
probe uncertainty). A decision takes the arm with the highest upper confidence bound; an exploration floor sends
``epsilon`` of the traffic uniformly over the capable arms, so every arm keeps a known, non-zero propensity, and
the propensity of every choice is logged in ``Decision.propensity`` (for offline evaluation with
``tierswitch.policies.offline``).

The reward of a request is ``quality - lam * cost``. The bandit learns it in two steps, because the quality of an
answer is known later than the answer:

1. ``observe(record)`` (register it as a router decision hook) remembers the request's context, arm and realised
   cost under its request id;
2. ``feedback(request_id, quality=q)`` (user feedback, or a comparison with the full tier) completes the reward and
   updates the arm. ``feedback(request_id, reward=r)`` passes a finished reward instead.

With ``shadow_quality=True``, a record that already holds the full tier's answer (a shadow sample, or a request the
full tier served) is rewarded at once, quality = 1.0 when the served answer equals the full tier's.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tierswitch.errors import ConfigError
from tierswitch.outputs import same_output
from tierswitch.policies.base import Policy
from tierswitch.types import Decision, DecisionRecord, Features, RoutingContext
from tierswitch.validation import describe, finite

__all__ = ["FEATURES", "ContextualBandit"]

FEATURES = ("bias", "score", "log_length", "uncertainty")
_FIELDS = {"tiers", "lam", "alpha", "epsilon", "ridge", "features", "length_scale", "decay", "warmup", "seed",
           "max_pending", "shadow_quality"}
_PREFIX = "bandit:"


class ContextualBandit(Policy):
    """LinUCB over ``tiers`` (cheapest first) with reward ``quality - lam * cost`` and an exploration floor.

    ``alpha`` scales the confidence bonus, ``epsilon`` is the exploration floor (a share of traffic spread
    uniformly over capable arms), ``ridge`` the prior precision, ``decay`` (<= 1) forgets old rewards of an arm
    at each of its updates (for drifting traffic), ``warmup`` the number of first decisions made uniformly at random.
    """

    def __init__(
        self,
        tiers: Sequence[str],
        *,
        lam: float = 0.0,
        alpha: float = 1.0,
        epsilon: float = 0.05,
        ridge: float = 1.0,
        features: Sequence[str] = ("bias", "score", "log_length"),
        length_scale: int = 512,
        decay: float = 1.0,
        warmup: int = 0,
        seed: int = 0,
        max_pending: int = 100_000,
        shadow_quality: bool = False,
    ) -> None:
        self.tiers = tuple(tiers)
        if len(self.tiers) < 2 or len(set(self.tiers)) != len(self.tiers):
            raise ConfigError("policy.tiers", f"needs at least 2 unique tier names, got {list(self.tiers)}")
        self.lam = finite("policy.lam", lam, low=0.0)
        self.alpha = finite("policy.alpha", alpha, low=0.0)
        self.epsilon = finite("policy.epsilon", epsilon, low=0.0, high=1.0)
        self.ridge = finite("policy.ridge", ridge, low=0.0, strict=True)
        self.decay = finite("policy.decay", decay, low=0.0, high=1.0, strict=True)
        self.features = tuple(features)
        unknown = [f for f in self.features if f not in FEATURES]
        if unknown or not self.features or len(set(self.features)) != len(self.features):
            raise ConfigError("policy.features", f"must be distinct names from {list(FEATURES)}, got "
                                                 f"{describe(features)}")
        for name, value, low in (("length_scale", length_scale, 1), ("max_pending", max_pending, 1),
                                 ("warmup", warmup, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"policy.{name}", f"must be an integer >= {low}, got {describe(value)}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ConfigError("policy.seed", f"must be an integer, got {describe(seed)}")
        self.length_scale = length_scale
        self.warmup = warmup
        self.seed = seed
        self.max_pending = max_pending
        self.shadow_quality = bool(shadow_quality)
        self.full = self.tiers[-1]
        self._log_scale = math.log1p(length_scale)
        d = len(self.features)
        self._lock = threading.Lock()
        self._rng = np.random.default_rng(seed)
        self._a_inv = {t: np.eye(d) / self.ridge for t in self.tiers}
        self._b = {t: np.zeros(d) for t in self.tiers}
        self._updates = dict.fromkeys(self.tiers, 0)
        self._reward_sum = dict.fromkeys(self.tiers, 0.0)
        self._decisions = 0
        self._pending: OrderedDict[int, tuple[str, np.ndarray, float]] = OrderedDict()

    def vector(self, features: Features | None, score: float | None) -> np.ndarray:
        """The context vector of a request, in ``self.features`` order."""
        values = []
        for name in self.features:
            if name == "bias":
                values.append(1.0)
            elif name == "score":
                values.append(float(score) if score is not None and math.isfinite(score) else 0.0)
            elif name == "log_length":
                length = features.length if features is not None else 0
                values.append(min(1.0, math.log1p(max(0, length)) / self._log_scale))
            else:
                u = features.uncertainty if features is not None else None
                values.append(float(u) if u is not None else 0.0)
        return np.array(values)

    def probabilities(self, ctx: RoutingContext) -> dict[str, float]:
        """The probability of each capable arm for this context now (no state change)."""
        arms = [t for t in self.tiers if t in ctx.capable]
        if not arms:
            return {}
        x = self.vector(ctx.features, ctx.score)
        with self._lock:
            return self._probabilities(arms, x)

    def _probabilities(self, arms: list[str], x: np.ndarray) -> dict[str, float]:
        if self._decisions < self.warmup:
            return {t: 1.0 / len(arms) for t in arms}
        best, best_ucb = arms[0], -math.inf
        for t in arms:  # cheapest first, so ties go to the cheaper arm
            a_inv = self._a_inv[t]
            ax = a_inv @ x
            ucb = float(ax @ self._b[t]) + self.alpha * math.sqrt(max(0.0, float(x @ ax)))
            if ucb > best_ucb:
                best, best_ucb = t, ucb
        floor = self.epsilon / len(arms)
        return {t: floor + (1.0 - self.epsilon if t == best else 0.0) for t in arms}

    def decide(self, ctx: RoutingContext) -> Decision:
        arms = [t for t in self.tiers if t in ctx.capable]
        if not arms:
            return Decision(None, _PREFIX + " no capable arm", self)
        x = self.vector(ctx.features, ctx.score)
        with self._lock:
            probs = self._probabilities(arms, x)
            self._decisions += 1
            pick = float(self._rng.random())
        acc = 0.0
        tier = arms[-1]
        for t in arms:
            acc += probs[t]
            if pick < acc:
                tier = t
                break
        greedy = max(probs, key=probs.__getitem__)
        how = "explore" if tier != greedy or len(set(probs.values())) == 1 else "ucb"
        return Decision(tier, f"{_PREFIX} {how} (p={probs[tier]:.3f})", self, probs[tier])

    # ---- learning --------------------------------------------------------------------------------------------
    def observe(self, record: DecisionRecord) -> None:
        """Remember a request this bandit decided (router decision hook); rewards come with ``feedback``."""
        if record.cached or not record.reason.startswith(_PREFIX) or record.decided_tier not in self._b:
            return
        if record.tier != record.decided_tier:  # a fallback served it: the chosen arm was not what ran
            return
        x = self.vector(record.features, record.score)
        cost = float(record.cost) if math.isfinite(record.cost) else 0.0
        quality = None
        if self.shadow_quality and self.full in record.predictions:
            served = record.predictions.get(record.tier)
            full = record.predictions[self.full]
            if served is not None:
                quality = 1.0 if same_output(served.output, full.output) else 0.0
        with self._lock:
            if quality is not None:
                self._update(record.tier, x, quality - self.lam * cost)
                return
            self._pending[record.request_id] = (record.tier, x, cost)
            while len(self._pending) > self.max_pending:  # feedback that never comes must not grow memory
                self._pending.popitem(last=False)

    def feedback(self, request_id: int, reward: float | None = None, *, quality: float | None = None) -> bool:
        """Reward a remembered request: ``quality`` (reward = quality - lam * its cost) or a finished ``reward``.
        Returns False when the request is unknown (not decided by this bandit, already rewarded, or forgotten)."""
        if (reward is None) == (quality is None):
            raise ValueError("feedback: pass exactly one of reward= or quality=")
        value = float(reward if reward is not None else quality)  # type: ignore[arg-type]
        if not math.isfinite(value):
            raise ValueError(f"feedback: the value must be finite, got {describe(value)}")
        with self._lock:
            entry = self._pending.pop(request_id, None)
            if entry is None:
                return False
            tier, x, cost = entry
            self._update(tier, x, value if reward is not None else value - self.lam * cost)
            return True

    def _update(self, tier: str, x: np.ndarray, reward: float) -> None:
        a_inv = self._a_inv[tier]
        if self.decay < 1.0:
            a_inv = a_inv / self.decay
            self._b[tier] *= self.decay
        ax = a_inv @ x
        self._a_inv[tier] = a_inv - np.outer(ax, ax) / (1.0 + float(x @ ax))  # Sherman-Morrison rank-one update
        self._b[tier] = self._b[tier] + reward * x
        self._updates[tier] += 1
        self._reward_sum[tier] += reward

    def status(self) -> dict[str, Any]:
        """Decisions made, updates and mean reward per arm, and requests waiting for feedback."""
        with self._lock:
            return {
                "decisions": self._decisions,
                "pending": len(self._pending),
                "updates": dict(self._updates),
                "mean_reward": {t: self._reward_sum[t] / n if n else None for t, n in self._updates.items()},
                "weights": {t: (self._a_inv[t] @ self._b[t]).tolist() for t in self.tiers},
            }

    def tier_names(self) -> set[str]:
        return set(self.tiers)

    def to_config(self) -> dict[str, Any]:
        return {"kind": "bandit", "tiers": list(self.tiers), "lam": self.lam, "alpha": self.alpha,
                "epsilon": self.epsilon, "ridge": self.ridge, "features": list(self.features),
                "length_scale": self.length_scale, "decay": self.decay, "warmup": self.warmup, "seed": self.seed,
                "max_pending": self.max_pending, "shadow_quality": self.shadow_quality}

    @classmethod
    def from_config(cls, config: Mapping[str, Any], field: str = "policy") -> ContextualBandit:
        return from_config(config, field)

    def __repr__(self) -> str:
        return f"ContextualBandit(tiers={list(self.tiers)}, lam={self.lam:g}, epsilon={self.epsilon:g})"


def from_config(config: Mapping[str, Any], field: str = "policy") -> ContextualBandit:
    """The ``bandit`` policy kind: ``{"kind": "bandit", "tiers": [...], "lam": 0.05, "epsilon": 0.05, ...}``."""
    from tierswitch.validation import only_keys, rebased, section

    config = section(config, field)
    only_keys(config, field, _FIELDS | {"kind"})
    tiers = config.get("tiers")
    if not isinstance(tiers, list) or not all(isinstance(t, str) for t in tiers):
        raise ConfigError(f"{field}.tiers", f"is required: a list of tier names, cheapest first; got {describe(tiers)}")
    features = config.get("features", ["bias", "score", "log_length"])
    if not isinstance(features, list):
        raise ConfigError(f"{field}.features", f"must be a list of names from {list(FEATURES)}, got "
                                               f"{describe(features)}")
    kwargs = {k: v for k, v in config.items() if k not in ("kind", "tiers")}
    try:
        return ContextualBandit(tiers, **kwargs)
    except ConfigError as exc:
        raise rebased(exc, "policy", field) from exc
