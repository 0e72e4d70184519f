"""Threshold sweeps for N tiers: every non-decreasing set of cuts drawn from the score quantiles, evaluated at once.

A point routes ``score < cuts[0]`` to the cheapest tier, ..., ``score >= cuts[-1]`` to the full tier: exactly the
``Threshold`` policy's rule (``bisect_right``), so a point found here is a config the router reproduces.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tierswitch.bench.metrics import accuracy, mean_cost, shares

__all__ = [
    "NEVER",
    "SweepPoint",
    "assign_by_cuts",
    "best_within",
    "candidate_cuts",
    "cheapest_reaching",
    "pareto",
    "random_at_shares",
    "sweep",
]

NEVER = 1.01  # a cut above every score in [0, 1]: no row reaches the tiers above it


@dataclass(frozen=True)
class SweepPoint:
    """One operating point: its cuts, accuracy, mean cost, and the share of rows each tier serves."""

    cuts: tuple[float, ...]
    accuracy: float
    cost: float
    shares: tuple[float, ...]

    def as_dict(self, tiers: Sequence[str]) -> dict[str, object]:
        return {"cuts": list(self.cuts), "accuracy": self.accuracy, "cost": self.cost,
                "shares": dict(zip(tiers, self.shares))}


def assign_by_cuts(scores: np.ndarray, cuts: Sequence[float]) -> np.ndarray:
    """Tier index per row: the number of cuts ``<=`` the score (``Threshold``'s ``bisect_right``)."""
    return np.searchsorted(np.asarray(cuts, dtype=np.float64), np.asarray(scores, dtype=np.float64), side="right")


def candidate_cuts(scores: np.ndarray, levels: int) -> np.ndarray:
    """Cut values at ``levels`` evenly spaced quantiles of ``scores``, plus ``NEVER``; sorted and unique."""
    qs = np.quantile(np.asarray(scores, dtype=np.float64), np.linspace(0.0, 1.0, levels))
    return np.unique(np.append(qs, NEVER))


def sweep(
    scores: np.ndarray, outcomes: np.ndarray, costs: np.ndarray, levels: int = 21, progress: bool = False,
) -> list[SweepPoint]:
    """Evaluate every non-decreasing choice of ``tiers - 1`` cuts among ``candidate_cuts(scores, levels)``.

    ``progress`` shows a tqdm bar when there are enough points for it to matter (2,000 or more: 4+ tiers or
    fine grids).
    """
    outcomes = np.asarray(outcomes, dtype=np.float64)
    n_tiers = outcomes.shape[1]
    values = candidate_cuts(scores, levels)
    combos = itertools.combinations_with_replacement(range(len(values)), n_tiers - 1)
    total = math.comb(len(values) + n_tiers - 2, n_tiers - 1)
    if progress and total >= 2000:
        from tqdm import tqdm

        combos = tqdm(combos, total=total, desc="sweep", unit="point", leave=False)
    points = []
    for combo in combos:
        cuts = tuple(float(values[i]) for i in combo)
        assign = assign_by_cuts(scores, cuts)
        points.append(SweepPoint(cuts, accuracy(outcomes, assign), mean_cost(costs, assign),
                                 tuple(float(s) for s in shares(assign, n_tiers))))
    return points


def pareto(points: Sequence[SweepPoint]) -> list[SweepPoint]:
    """The points no other point beats on both cost and accuracy, cheapest first."""
    frontier: list[SweepPoint] = []
    for p in sorted(points, key=lambda p: (p.cost, -p.accuracy)):
        if not frontier or p.accuracy > frontier[-1].accuracy:
            frontier.append(p)
    return frontier


def cheapest_reaching(points: Sequence[SweepPoint], min_accuracy: float) -> SweepPoint | None:
    """The cheapest point with ``accuracy >= min_accuracy`` (the more accurate one among equal costs)."""
    ok = [p for p in points if p.accuracy >= min_accuracy]
    return min(ok, key=lambda p: (p.cost, -p.accuracy)) if ok else None


def best_within(
    points: Sequence[SweepPoint], max_cost: float | None = None, max_full_share: float | None = None
) -> SweepPoint | None:
    """The most accurate point within a mean-cost cap and/or a full-tier share cap (the cheaper one among ties)."""
    ok = [p for p in points
          if (max_cost is None or p.cost <= max_cost) and (max_full_share is None or p.shares[-1] <= max_full_share)]
    return max(ok, key=lambda p: (p.accuracy, -p.cost)) if ok else None


def random_at_shares(
    outcomes: np.ndarray, costs: np.ndarray, tier_shares: Sequence[float], seeds: Sequence[int] = tuple(range(10)),
) -> tuple[float, float]:
    """Random routing with the same tier shares: mean accuracy and mean cost over ``seeds``."""
    outcomes = np.asarray(outcomes, dtype=np.float64)
    n = len(outcomes)
    counts = np.floor(np.asarray(tier_shares) * n + 0.5).astype(np.int64)
    counts[-1] = n - counts[:-1].sum()  # rounding leftovers go to the last tier
    base = np.repeat(np.arange(len(counts)), counts)
    accs, cost = [], []
    for seed in seeds:
        assign = np.random.default_rng(seed).permutation(base)
        accs.append(accuracy(outcomes, assign))
        cost.append(mean_cost(costs, assign))
    return float(np.mean(accs)), float(np.mean(cost))
