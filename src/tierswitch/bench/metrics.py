"""Cost-vs-accuracy metrics as plain functions over arrays (names as in DESIGN.md's vocabulary).

Conventions: ``outcomes`` and ``costs`` have shape ``(n, tiers)``, tiers cheapest first; ``assign`` holds each
row's tier index. Two-tier metrics follow RouteLLM (Ong et al., 2024) so results compare with theirs:

- the curve: thresholds at the 11 score deciles (numpy's linear-interpolated quantiles of the scores, like
  ``pandas.qcut``); at each threshold ``t`` rows with ``score >= t`` go to the strong tier, except the last
  (the maximum), where ``score > t`` is used so the curve ends at 0% strong calls;
- APGR: the area under accuracy vs strong-call share (trapezoids), normalised so always-weak is 0 and always-strong
  is 1;
- CPT(x): the strong-call share at which the curve first recovers ``x`` of the weak-to-strong accuracy gap, by
  linear interpolation between the two curve points around it. On a monotone curve this is RouteLLM's
  ``np.interp``; on a non-monotone one it is the first crossing (np.interp would be undefined there).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "OraclePoint",
    "RouteCurve",
    "accuracy",
    "apgr",
    "cost_reduction",
    "cpt",
    "mean_cost",
    "oracle",
    "pgr",
    "random_routellm",
    "routellm_curve",
    "shares",
]


def accuracy(outcomes: np.ndarray, assign: np.ndarray) -> float:
    """Mean outcome of the tier each row was sent to."""
    outcomes = np.asarray(outcomes, dtype=np.float64)
    return float(outcomes[np.arange(len(outcomes)), np.asarray(assign)].mean())


def mean_cost(costs: np.ndarray, assign: np.ndarray) -> float:
    """Mean cost per request of the tier each row was sent to."""
    costs = np.asarray(costs, dtype=np.float64)
    return float(costs[np.arange(len(costs)), np.asarray(assign)].mean())


def shares(assign: np.ndarray, n_tiers: int) -> np.ndarray:
    """Share of rows sent to each tier."""
    assign = np.asarray(assign)
    return np.bincount(assign, minlength=n_tiers)[:n_tiers] / max(1, len(assign))


def cost_reduction(cost: float, full_cost: float) -> float:
    """``1 - cost / full_cost``: the share of the always-full bill saved."""
    return 1.0 - cost / full_cost if full_cost else 0.0


def pgr(acc: float, weak_acc: float, strong_acc: float) -> float:
    """Performance gap recovered: ``(acc - weak) / (strong - weak)`` (NaN when the tiers are equally accurate)."""
    gap = strong_acc - weak_acc
    return (acc - weak_acc) / gap if gap else float("nan")


@dataclass(frozen=True)
class OraclePoint:
    """The per-row best choice: the tier with the highest outcome, the cheapest among ties (so when no tier is
    right, the cheapest)."""

    assign: np.ndarray
    accuracy: float
    cost: float
    shares: np.ndarray


def oracle(outcomes: np.ndarray, costs: np.ndarray) -> OraclePoint:
    """The cheapest tier that is right, per row (tiers cheapest first)."""
    outcomes = np.asarray(outcomes, dtype=np.float64)
    assign = outcomes.argmax(axis=1)  # argmax returns the first (cheapest) of tied maxima
    return OraclePoint(assign, accuracy(outcomes, assign), mean_cost(costs, assign), shares(assign, outcomes.shape[1]))


@dataclass(frozen=True)
class RouteCurve:
    """Points of a two-tier routing curve, sorted by strong share: thresholds, strong shares, accuracies."""

    thresholds: np.ndarray
    strong_share: np.ndarray
    accuracy: np.ndarray
    weak_acc: float
    strong_acc: float


def routellm_curve(
    scores: np.ndarray, weak: np.ndarray, strong: np.ndarray, n_points: int = 11
) -> RouteCurve:
    """RouteLLM's sweep of a score over its quantiles (see the module docstring); ``weak``/``strong`` are per-row
    outcomes of the two tiers."""
    scores = np.asarray(scores, dtype=np.float64)
    weak = np.asarray(weak, dtype=np.float64)
    strong = np.asarray(strong, dtype=np.float64)
    if not (len(scores) == len(weak) == len(strong)) or len(scores) == 0:
        raise ValueError("scores, weak and strong must be non-empty and of equal length")
    thresholds = np.quantile(scores, np.linspace(0.0, 1.0, n_points))
    share, acc = [], []
    for i, t in enumerate(thresholds):
        to_strong = scores >= t if i < len(thresholds) - 1 else scores > t
        share.append(to_strong.mean())
        acc.append(np.where(to_strong, strong, weak).mean())
    order = np.argsort(share, kind="stable")
    return RouteCurve(thresholds[order], np.asarray(share)[order], np.asarray(acc)[order],
                      float(weak.mean()), float(strong.mean()))


def apgr(curve: RouteCurve) -> float:
    """Average performance gap recovered: the normalised area under the curve (RouteLLM's APGR)."""
    x, y = curve.strong_share, curve.accuracy
    span = float(x[-1] - x[0])
    gap = curve.strong_acc - curve.weak_acc
    if span <= 0 or gap == 0:
        return float("nan")
    area = float(np.sum((y[1:] + y[:-1]) * np.diff(x)) / 2.0)
    return (area - curve.weak_acc * span) / (gap * span)


def cpt(curve: RouteCurve, x: float) -> float:
    """Strong-call share needed to recover ``x`` (e.g. 0.5) of the accuracy gap; NaN when never reached."""
    target = curve.weak_acc + x * (curve.strong_acc - curve.weak_acc)
    share, acc = curve.strong_share, curve.accuracy
    if acc[0] >= target:
        return float(share[0])
    for i in range(1, len(acc)):
        if acc[i] >= target:
            rise = acc[i] - acc[i - 1]
            frac = (target - acc[i - 1]) / rise if rise > 0 else 1.0
            return float(share[i - 1] + frac * (share[i] - share[i - 1]))
    return float("nan")


def random_routellm(
    weak: np.ndarray, strong: np.ndarray, seeds: Sequence[int] = tuple(range(10)), n_points: int = 11,
    cpts: Sequence[float] = (0.2, 0.5, 0.8),
) -> dict[str, float]:
    """The random router (uniform random scores) through the same sweep, averaged over ``seeds``: mean APGR and
    CPTs, and the APGR's standard deviation over seeds."""
    values: dict[str, list[float]] = {"apgr": [], **{f"cpt{round(c * 100)}": [] for c in cpts}}
    for seed in seeds:
        scores = np.random.default_rng(seed).random(len(weak))
        curve = routellm_curve(scores, weak, strong, n_points)
        values["apgr"].append(apgr(curve))
        for c in cpts:
            values[f"cpt{round(c * 100)}"].append(cpt(curve, c))
    out = {k: float(np.mean(v)) for k, v in values.items()}
    out["apgr_std"] = float(np.std(values["apgr"]))
    return out
