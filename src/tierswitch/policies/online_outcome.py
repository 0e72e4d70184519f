"""``OnlineOutcomePolicy``: per-tier outcome models that learn online from the decision log and ``router.feedback``.

Only the tier that answered a request is observed (a partial label), and which tier answers depends on the policy
itself, so a plain online fit would learn each tier's accuracy on the inputs routed to it, not on all inputs. The
policy corrects for that with the propensities it logs: every decision records ``Decision.propensity``, the
probability the policy had of picking that tier (``epsilon`` exploration keeps it above ``epsilon / tiers``), and
the feedback for that request updates that tier's model with importance weight ``1 / propensity`` (clipped at
``max_weight``): the inverse-propensity-weighted loss is an unbiased estimate of the loss over all inputs.

Each tier's model is an online logistic regression over hashed word n-grams and the dense counts of the input
(``tierswitch.estimator.learned_features``; counts standardised by their running mean and variance), trained by
weighted AdaGrad with L2 decay. Decisions use the cost-aware rule ``argmax P(right) - lam * cost``; a ``prior``
model (e.g. a fitted ``TierOutcomeModel``) answers for a tier until it has ``warmup`` updates.
Learning runs through the router's hooks: ``observe`` (a decision hook) remembers requests this policy decided,
and ``feedback(request_id, quality=...)`` (what ``router.feedback`` forwards) applies the label.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tierswitch.errors import ConfigError
from tierswitch.estimator.learned_features import analyse, bucket, text_of
from tierswitch.policies.base import Policy
from tierswitch.types import Decision, DecisionRecord, Features, RoutingContext

__all__ = ["OnlineOutcomePolicy"]

_PREFIX = "online-outcome:"


class OnlineOutcomePolicy(Policy):
    """Cost-aware routing on per-tier outcome models learned online with IPS-weighted updates (module docstring).

    ``costs`` (per tier, any unit) price the rule; without them the tier's cost model prices the input.
    """

    def __init__(
        self,
        tiers: Sequence[str],
        *,
        lam: float = 0.1,
        epsilon: float = 0.1,
        costs: Mapping[str, float] | None = None,
        learning_rate: float = 0.1,
        l2: float = 1e-4,
        dim: int = 1 << 18,
        max_weight: float = 20.0,
        prior: Any = None,
        warmup: int = 50,
        max_pending: int = 100_000,
        seed: int = 0,
    ) -> None:
        self.tiers = tuple(tiers)
        if len(self.tiers) < 2 or len(set(self.tiers)) != len(self.tiers):
            raise ConfigError("policy.tiers", f"needs at least 2 unique tier names, got {list(self.tiers)}")
        if not 0.0 < epsilon <= 1.0:
            raise ConfigError("policy.epsilon", f"must be in (0, 1] so every tier keeps a known propensity, "
                              f"got {epsilon!r}")
        if not (math.isfinite(lam) and lam >= 0):
            raise ConfigError("policy.lam", f"must be a finite number >= 0, got {lam!r}")
        self.lam, self.epsilon = float(lam), float(epsilon)
        self.costs = None if costs is None else {t: float(c) for t, c in costs.items()}
        self.learning_rate, self.l2, self.dim = float(learning_rate), float(l2), int(dim)
        self.max_weight, self.prior, self.warmup = float(max_weight), prior, int(warmup)
        self.max_pending, self.seed = int(max_pending), seed
        self._w = {t: np.zeros(self.dim) for t in self.tiers}
        self._bias = dict.fromkeys(self.tiers, 0.0)
        self._g2 = {t: np.zeros(self.dim) for t in self.tiers}
        n_dense = len(analyse("")[0])
        self._v = {t: np.zeros(n_dense) for t in self.tiers}
        self._v_g2 = {t: np.zeros(n_dense) for t in self.tiers}
        self._seen, self._mean, self._m2 = 0, np.zeros(n_dense), np.zeros(n_dense)
        self._bias_g2 = dict.fromkeys(self.tiers, 0.0)
        self._updates = dict.fromkeys(self.tiers, 0)
        self._pending: OrderedDict[int, tuple[str, tuple[np.ndarray, np.ndarray], float]] = OrderedDict()
        self._rng = np.random.default_rng(seed)
        self._lock = threading.Lock()

    # -- features and the models --------------------------------------------------------------------------------
    def _features(self, x: Any) -> tuple[np.ndarray, np.ndarray]:
        dense, grams = analyse(text_of(x))
        idx = np.unique(np.fromiter((bucket(g) % self.dim for g in grams), dtype=np.int64, count=len(grams)))
        return idx, np.asarray(dense, dtype=np.float64)

    def _z(self, dense: np.ndarray) -> np.ndarray:
        """Dense counts standardised by the running mean and variance of the inputs learned from so far."""
        if self._seen < 2:
            return np.zeros_like(dense)
        sd = np.sqrt(self._m2 / (self._seen - 1))
        return np.asarray(np.where(sd > 0, (dense - self._mean) / np.where(sd > 0, sd, 1.0), 0.0))

    def _p(self, tier: str, feats: tuple[np.ndarray, np.ndarray]) -> float:
        idx, dense = feats
        scale = 1.0 / math.sqrt(len(idx)) if len(idx) else 0.0
        z = self._bias[tier] + float(self._w[tier][idx].sum()) * scale + float(self._v[tier] @ self._z(dense))
        return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))

    def probabilities(self, x: Any, features: Features | None = None) -> dict[str, float]:
        """P(tier right) for ``x``: the online model, or the ``prior`` for tiers still warming up."""
        idx = self._features(x)
        prior = None
        out = {}
        with self._lock:
            for t in self.tiers:
                if self._updates[t] >= self.warmup or self.prior is None:
                    out[t] = self._p(t, idx)
                else:
                    if prior is None:
                        prior = self.prior.tier_probabilities(x, features)
                    out[t] = float(prior.get(t, self._p(t, idx)))
        return out

    tier_probabilities = probabilities

    # -- deciding -----------------------------------------------------------------------------------------------
    def _cost(self, ctx: RoutingContext, tier: str) -> float:
        if self.costs is not None and tier in self.costs:
            return self.costs[tier]
        model = ctx.tiers[tier].cost_model if tier in ctx.tiers else None
        return float(model.cost(ctx.features.length)) if model is not None else 0.0

    def decide(self, ctx: RoutingContext) -> Decision:
        arms = [t for t in self.tiers if t in ctx.capable]
        if not arms:
            return Decision(None, _PREFIX + " no capable tier", self)
        probs = self.probabilities(ctx.request.payload, ctx.features)
        values = [probs[t] - self.lam * self._cost(ctx, t) for t in arms]
        greedy = arms[int(np.argmax(values))]  # ties keep the cheaper tier
        with self._lock:
            explore = float(self._rng.random()) < self.epsilon
            tier = arms[int(self._rng.integers(len(arms)))] if explore else greedy
        propensity = self.epsilon / len(arms) + (1.0 - self.epsilon if tier == greedy else 0.0)
        how = "explore" if tier != greedy else "greedy"
        return Decision(tier, f"{_PREFIX} {how} p({tier} right)={probs[tier]:.3f}", self, propensity)

    # -- learning (router hooks) -------------------------------------------------------------------------------
    def observe(self, record: DecisionRecord) -> None:
        """Remember a request this policy decided and that tier answered; its label comes with ``feedback``."""
        if record.cached or not record.reason.startswith(_PREFIX) or record.tier != record.decided_tier:
            return
        if record.tier not in self._w or not record.propensity > 0:
            return
        idx = self._features(record.request.payload)
        with self._lock:
            self._pending[record.request_id] = (record.tier, idx, float(record.propensity))
            while len(self._pending) > self.max_pending:
                self._pending.popitem(last=False)

    def feedback(self, request_id: int, reward: float | None = None, *, quality: float | None = None) -> bool:
        """The outcome of a remembered request: ``quality`` in [0, 1] (was the answer right). ``reward`` is read
        as the same label. Returns False for a request this policy does not know (or already labelled)."""
        value = quality if quality is not None else reward
        if value is None or not math.isfinite(value):
            raise ValueError("feedback: pass quality= (or reward=) as a finite number in [0, 1]")
        label = min(1.0, max(0.0, float(value)))
        with self._lock:
            entry = self._pending.pop(request_id, None)
            if entry is None:
                return False
            tier, idx, propensity = entry
            self._update(tier, idx, label, min(self.max_weight, 1.0 / propensity))
        return True

    def learn(self, tier: str, x: Any, label: float, propensity: float = 1.0) -> None:
        """One IPS-weighted update from an offline log row (what ``feedback`` does for a live request)."""
        if tier not in self._w:
            raise ConfigError("tier", f"unknown tier {tier!r}; this policy routes {list(self.tiers)}")
        idx = self._features(x)
        with self._lock:
            self._update(tier, idx, min(1.0, max(0.0, float(label))), min(self.max_weight, 1.0 / propensity))

    def _update(self, tier: str, feats: tuple[np.ndarray, np.ndarray], label: float, weight: float) -> None:
        # AdaGrad per coordinate: rare n-grams keep a large step, frequent ones settle; L2 shrinks what it touches
        idx, dense = feats
        self._seen += 1  # Welford: running mean and variance of the dense counts
        delta = dense - self._mean
        self._mean += delta / self._seen
        self._m2 += delta * (dense - self._mean)
        scale = 1.0 / math.sqrt(len(idx)) if len(idx) else 0.0
        grad = (self._p(tier, feats) - label) * weight
        zd = self._z(dense)
        vstep = grad * zd + self.l2 * self._v[tier]
        self._v_g2[tier] += vstep * vstep
        self._v[tier] -= self.learning_rate * vstep / np.sqrt(self._v_g2[tier] + 1e-8)
        w, g2 = self._w[tier], self._g2[tier]
        step = grad * scale + self.l2 * w[idx]
        g2[idx] += step * step
        w[idx] -= self.learning_rate * step / np.sqrt(g2[idx] + 1e-8)
        self._bias_g2[tier] += grad * grad
        self._bias[tier] -= self.learning_rate * grad / math.sqrt(self._bias_g2[tier] + 1e-8)
        self._updates[tier] += 1

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {"updates": dict(self._updates), "pending": len(self._pending)}

    def tier_names(self) -> set[str]:
        return set(self.tiers)

    def __repr__(self) -> str:
        return f"OnlineOutcomePolicy(tiers={list(self.tiers)}, lam={self.lam:g}, epsilon={self.epsilon:g})"
