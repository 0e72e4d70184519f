"""``LearnedPolicy``: route on each tier's predicted probability of being right.

The probabilities come from a model fitted on logged outcomes: any object with the small ``TierProbabilities``
protocol below, or ``tierswitch.estimator.learned.LearnedEstimator`` fitted on per-tier outcomes (adapted by
``PerTierOutputs``). Two rules:

- ``threshold`` (default): the cheapest capable tier whose probability clears its threshold; when none does, the
  most expensive capable tier;
- ``utility`` (set ``lam``): the capable tier with the highest ``p(right) - lam * cost``, the cost priced by the
  tier's cost model for this input (or by the ``costs`` given).

Tiers the model has no probability for are skipped, except as the fallback; when no capable tier has a
probability the policy abstains, so ``LearnedPolicy(...) | Fixed("full")`` is a safe composition.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from tierswitch.errors import ConfigError
from tierswitch.policies.base import Policy
from tierswitch.types import Decision, Features, RoutingContext
from tierswitch.validation import describe, finite

__all__ = ["LearnedPolicy", "PerTierOutputs", "TierProbabilities", "as_tier_probabilities"]

_FIELDS = {"tiers", "model", "threshold", "lam", "costs"}


@runtime_checkable
class TierProbabilities(Protocol):
    """A model of how likely each tier is to answer this input right.

    ``tier_probabilities(x, features)`` returns ``{tier name: probability in [0, 1]}`` for the tiers it knows
    (``x`` is the payload, ``features`` what the router measured). It is called once per routed request, so it
    should be cheap (plain numpy, no per-call scikit-learn overhead).
    """

    def tier_probabilities(self, x: Any, features: Features) -> Mapping[str, float]: ...


class PerTierOutputs:
    """Adapts an estimator fitted on per-tier outcomes that exposes ``raw_outputs(x)`` (one predicted correctness
    per tier, cheapest first) and names its tiers in ``fit_report()["tiers"]`` (``tierswitch.estimator.learned``)
    to ``TierProbabilities``: outputs are clipped to [0, 1]."""

    def __init__(self, estimator: Any) -> None:
        report = estimator.fit_report()
        tiers = report.get("tiers")
        if report.get("target") != "gain" or not tiers:
            raise ConfigError("policy.model", "the estimator was not fitted on per-tier outcomes with tier names; "
                              "fit it with y of shape (n, tiers) and tiers=[...]")
        self.estimator = estimator
        self.tiers = tuple(tiers)

    def tier_probabilities(self, x: Any, features: Features) -> dict[str, float]:
        outputs = self.estimator.raw_outputs(x)
        return {t: min(1.0, max(0.0, float(v))) for t, v in zip(self.tiers, outputs)}

    def to_config(self) -> dict[str, Any]:
        config: dict[str, Any] = self.estimator.to_config()
        return config


def as_tier_probabilities(model: Any) -> TierProbabilities:
    """``model`` itself when it has ``tier_probabilities``; a ``PerTierOutputs`` view of a fitted per-tier
    estimator; otherwise ``ConfigError``."""
    if isinstance(model, TierProbabilities):
        return model
    if hasattr(model, "raw_outputs") and hasattr(model, "fit_report"):
        return PerTierOutputs(model)
    raise ConfigError("policy.model", f"needs a tier_probabilities(x, features) method, got {type(model).__name__}; "
                      "use an estimator fitted on per-tier outcomes, or wrap your model")


class LearnedPolicy(Policy):
    """Pick a tier from ``model``'s per-tier probabilities of being right (see the module docstring).

    ``threshold`` is one number for every tier or a mapping per tier; ``lam`` switches to the utility rule;
    ``costs`` (per tier) replaces the tiers' cost models in that rule.
    """

    def __init__(
        self,
        model: TierProbabilities,
        tiers: Sequence[str],
        *,
        threshold: float | Mapping[str, float] = 0.8,
        lam: float | None = None,
        costs: Mapping[str, float] | None = None,
    ) -> None:
        self.model = as_tier_probabilities(model)
        self.tiers = tuple(tiers)
        if not self.tiers or len(set(self.tiers)) != len(self.tiers):
            raise ConfigError("policy.tiers", f"needs unique tier names, cheapest first, got {list(self.tiers)}")
        if isinstance(threshold, Mapping):
            self.threshold = {t: finite(f"policy.threshold.{t}", v, low=0.0, high=1.0) for t, v in threshold.items()}
        else:
            value = finite("policy.threshold", threshold, low=0.0, high=1.0)
            self.threshold = dict.fromkeys(self.tiers, value)
        self.lam = None if lam is None else finite("policy.lam", lam, low=0.0)
        self.costs = None if costs is None else {t: float(c) for t, c in costs.items()}

    def decide(self, ctx: RoutingContext) -> Decision:
        capable = [t for t in self.tiers if t in ctx.capable]
        if not capable:
            return Decision(None, "learned: no capable tier", self)
        probs = self.model.tier_probabilities(ctx.request.payload, ctx.features)
        known = [t for t in capable if t in probs and math.isfinite(probs[t])]
        if not known:
            return Decision(None, "learned: the model has no probability for any capable tier", self)
        if self.lam is None:
            for t in known:
                needed = self.threshold.get(t)
                if needed is not None and probs[t] >= needed:
                    return Decision(t, f"learned: p({t} right)={probs[t]:.3f} >= {needed:g}", self)
            return Decision(capable[-1], "learned: no tier confident enough; strongest capable tier", self)
        length = ctx.features.length
        best, best_value = known[0], -math.inf
        for t in known:  # cheapest first: ties keep the cheaper tier
            cost = self.costs[t] if self.costs and t in self.costs else (
                ctx.tiers[t].cost_model.cost(length) if t in ctx.tiers else 0.0)
            value = probs[t] - self.lam * cost
            if value > best_value:
                best, best_value = t, value
        return Decision(best, f"learned: p({best} right) - lam*cost = {best_value:.3f} is the best", self)

    def tier_names(self) -> set[str]:
        return set(self.tiers)

    def to_config(self) -> dict[str, Any]:
        to_config = getattr(self.model, "to_config", None)
        if to_config is None:
            raise NotImplementedError(f"LearnedPolicy's model {type(self.model).__name__} has no config form")
        config: dict[str, Any] = {"kind": "learned", "tiers": list(self.tiers), "model": to_config()}
        values = set(self.threshold.values())
        config["threshold"] = values.pop() if len(values) == 1 and len(self.threshold) == len(self.tiers) \
            else dict(self.threshold)
        if self.lam is not None:
            config["lam"] = self.lam
        if self.costs is not None:
            config["costs"] = dict(self.costs)
        return config

    @classmethod
    def from_config(cls, config: Mapping[str, Any], field: str = "policy", *,
                    build_estimator: Callable[[Any, str], Any] | None = None) -> LearnedPolicy:
        return from_config(config, field, build_estimator=build_estimator)

    def __repr__(self) -> str:
        rule = f"lam={self.lam:g}" if self.lam is not None else f"threshold={self.threshold}"
        return f"LearnedPolicy(tiers={list(self.tiers)}, {rule})"


def from_config(config: Mapping[str, Any], field: str = "policy", *,
                build_estimator: Callable[[Any, str], Any] | None = None) -> LearnedPolicy:
    """The ``learned`` policy kind: ``{"kind": "learned", "tiers": [...], "model": {estimator config},
    "threshold": 0.8}`` (or ``"lam": ...`` for the utility rule). ``model`` is built by ``build_estimator(config,
    field)`` (``tierswitch.config.estimator_from_config``, which the kind registry passes; this module never imports
    the registry, a layer above) and must give per-tier probabilities; a model object is taken as is."""
    from tierswitch.validation import only_keys, rebased, section

    config = section(config, field)
    only_keys(config, field, _FIELDS | {"kind"})
    tiers = config.get("tiers")
    if not isinstance(tiers, list) or not all(isinstance(t, str) for t in tiers):
        raise ConfigError(f"{field}.tiers", f"is required: a list of tier names, cheapest first; got {describe(tiers)}")
    if "model" not in config:
        raise ConfigError(f"{field}.model", "is required: an estimator config that gives per-tier probabilities")
    model = config["model"]
    if isinstance(model, Mapping):
        if build_estimator is None:
            raise ConfigError(f"{field}.model", "is an estimator config, and no build_estimator was given: build "
                                                "the policy with tierswitch.policy_from_config, or pass "
                                                "build_estimator=estimator_from_config")
        model = build_estimator(model, f"{field}.model")
    try:
        model = as_tier_probabilities(model)
    except ConfigError as exc:
        raise ConfigError(f"{field}.model", f"a {type(model).__name__} gives no per-tier probabilities: "
                          + str(exc).split(": ", 1)[-1]) from exc
    except Exception as exc:  # e.g. an unfitted estimator: say which field and what to do
        raise ConfigError(f"{field}.model", f"cannot read per-tier probabilities ({exc}); point it at a saved, "
                          "fitted learned estimator (path: ...)") from exc
    costs = config.get("costs")
    if costs is not None:
        costs = section(costs, f"{field}.costs")
        for t, c in costs.items():
            finite(f"{field}.costs.{t}", c, low=0.0)
    try:
        return LearnedPolicy(model, tiers, threshold=config.get("threshold", 0.8), lam=config.get("lam"),
                             costs=costs)
    except ConfigError as exc:
        raise rebased(exc, "policy", field) from exc
