"""Score a held-out set and measure everything the report shows; pick operating points for a target.

``evaluate_scored`` is pure arithmetic over a scored ``ReplayData``: each tier alone, the oracle, the RouteLLM
two-tier curve (cheapest vs full tier) with APGR and CPT(20/50/80%), the random router, the N-tier threshold sweep,
its Pareto frontier, random routing at the frontier's tier shares, and the cost reduction at 95% / 99% of the full
tier's accuracy. ``Target`` picks an operating point from sweep points.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tierswitch.bench.metrics import (
    apgr,
    cost_reduction,
    cpt,
    oracle,
    pgr,
    random_routellm,
    routellm_curve,
)
from tierswitch.bench.sweep import SweepPoint, cheapest_reaching, pareto, random_at_shares, sweep
from tierswitch.bench.table import ReplayData
from tierswitch.errors import ConfigError
from tierswitch.estimator.learned import text_of
from tierswitch.validation import describe

__all__ = ["CPTS", "Target", "evaluate_scored", "length_scores", "parse_target"]

CPTS = (0.2, 0.5, 0.8)
REDUCTION_AT = (0.95, 0.99)


@dataclass(frozen=True)
class Target:
    """What ``tune`` aims for: ``accuracy`` (>= value x full-tier accuracy, at the lowest cost), ``cost`` (mean
    cost <= value, at the best accuracy) or ``full_share`` (full-tier share <= value, at the best accuracy)."""

    kind: str
    value: float

    def pick(self, points: Sequence[SweepPoint], full_accuracy: float) -> SweepPoint | None:
        """The best point meeting the target, or None when no point does."""
        if self.kind == "accuracy":
            return cheapest_reaching(points, self.value * full_accuracy)
        ok = [p for p in points if (p.cost if self.kind == "cost" else p.shares[-1]) <= self.value + 1e-12]
        return max(ok, key=lambda p: (p.accuracy, -p.cost)) if ok else None

    def met(self, point: SweepPoint, full_accuracy: float) -> bool:
        if self.kind == "accuracy":
            return point.accuracy >= self.value * full_accuracy
        return (point.cost if self.kind == "cost" else point.shares[-1]) <= self.value + 1e-12

    def describe(self) -> str:
        return {"accuracy": f"accuracy >= {self.value:g} x full-tier accuracy", "cost": f"mean cost <= {self.value:g}",
                "full_share": f"full-tier share <= {self.value:g}"}[self.kind]


def parse_target(text: str) -> Target:
    """``accuracy=0.95``, ``cost=0.002`` or ``full_share=0.3`` -> ``Target`` (``ConfigError`` on anything else)."""
    kind, sep, raw = str(text).partition("=")
    kind = kind.strip()
    if not sep or kind not in ("accuracy", "cost", "full_share"):
        raise ConfigError("target", f"must be accuracy=FRACTION, cost=X or full_share=P, got {describe(text)}")
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError("target", f"{describe(raw)} is not a number (in {describe(text)})") from None
    if not np.isfinite(value) or value < 0 or (kind != "cost" and value > 1):
        raise ConfigError("target", f"{kind} must be {'>= 0' if kind == 'cost' else 'within [0, 1]'}, got {value}")
    return Target(kind, value)


def length_scores(inputs: Sequence[object]) -> np.ndarray:
    """The input's length in characters: the simplest complexity score, reported as a baseline."""
    return np.array([len(text_of(x)) for x in inputs], dtype=np.float64)


def evaluate_scored(
    data: ReplayData, scores: np.ndarray, *, levels: int | None = None, random_seeds: Sequence[int] = tuple(range(10)),
    progress: bool = False,
) -> dict[str, object]:
    """Every metric of the report for ``data`` scored by ``scores`` (see the module docstring)."""
    out, C, tiers = data.outcomes, data.costs, data.tiers
    scores = np.asarray(scores, dtype=np.float64)
    alone = {t: {"accuracy": float(out[:, j].mean()), "cost": float(C[:, j].mean())} for j, t in enumerate(tiers)}
    full_acc, full_cost = alone[tiers[-1]]["accuracy"], alone[tiers[-1]]["cost"]
    best = oracle(out, C)
    curve = routellm_curve(scores, out[:, 0], out[:, -1])
    length_curve = routellm_curve(length_scores(data.inputs), out[:, 0], out[:, -1])
    points = sweep(scores, out, C, levels or (101 if len(tiers) == 2 else 21), progress)
    frontier = pareto(points)
    reductions: dict[str, object] = {}
    for fraction in REDUCTION_AT:
        p = cheapest_reaching(points, fraction * full_acc)
        reductions[f"{fraction:g}"] = None if p is None else {
            "cost_reduction": cost_reduction(p.cost, full_cost), **p.as_dict(tiers)}
    random_line = [random_at_shares(out, C, p.shares, random_seeds) for p in frontier]
    return {
        "rows": len(data),
        "tiers": {t: {**alone[t]} for t in tiers},
        "oracle": {"accuracy": best.accuracy, "cost": best.cost, "cost_reduction": cost_reduction(best.cost, full_cost),
                   "shares": dict(zip(tiers, best.shares.tolist()))},
        "routellm": {
            "pair": [tiers[0], tiers[-1]],
            "apgr": apgr(curve),
            **{f"cpt{round(c * 100)}": cpt(curve, c) for c in CPTS},
            "curve": {"threshold": curve.thresholds.tolist(), "strong_share": curve.strong_share.tolist(),
                      "accuracy": curve.accuracy.tolist()},
        },
        "length_baseline": {"apgr": apgr(length_curve), **{f"cpt{round(c * 100)}": cpt(length_curve, c) for c in CPTS}},
        "random": random_routellm(out[:, 0], out[:, -1], random_seeds, cpts=CPTS),
        "cost_reduction_at": reductions,
        "sweep": [p.as_dict(tiers) for p in points],
        "pareto": [{**p.as_dict(tiers), "pgr": pgr(p.accuracy, alone[tiers[0]]["accuracy"], full_acc),
                    "random_accuracy": r[0], "random_cost": r[1]} for p, r in zip(frontier, random_line)],
    }
