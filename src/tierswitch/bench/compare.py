"""Per-tier routers in the replay report: the calibrated ``TierOutcomeModel`` and the in-report baselines.

Every split of ``bench replay`` fits, on its training rows only:

- ``per_tier``: ``TierOutcomeModel`` (ridge + similarity, CV-chosen, Platt-calibrated per tier);
- ``tfidf``: the standard baseline, TF-IDF word 1-2-grams (sublinear tf) + logistic regression (C=1), one model per
  tier, so it is scored by exactly the same decision rules;

and scores the held-out rows with both. Decisions are cost-aware: a row goes to the tier maximising
``P(right) - lam * unit_cost`` (``unit_cost``: the tier's mean cost on the training rows over the full tier's), and
``lam`` is swept to draw the accuracy/cost curve. With two tiers the same models also give the RouteLLM score
``p_full - p_cheapest`` (APGR, CPT) — the 2-tier score path is the special case of the rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tierswitch.bench.metrics import accuracy, mean_cost, shares
from tierswitch.bench.sweep import SweepPoint, cheapest_reaching, pareto
from tierswitch.bench.table import ReplayData
from tierswitch.estimator.learned import text_of

__all__ = ["LAMBDAS", "assign_lambda", "lambda_sweep", "per_tier_metrics", "tfidf_probabilities", "unit_costs"]

LAMBDAS = np.concatenate([[0.0], np.geomspace(1e-3, 10.0, 160), [1e9]])
REDUCTION_AT = (0.95, 0.97, 0.99)


def unit_costs(train: ReplayData) -> np.ndarray:
    """Each tier's mean cost on the training rows, over the full tier's (the full tier costs 1)."""
    c = train.costs.mean(axis=0)
    return np.asarray(c / c[-1] if c[-1] > 0 else c, dtype=np.float64)


def assign_lambda(P: np.ndarray, unit: np.ndarray, lam: float) -> np.ndarray:
    """Tier per row: argmax of ``P - lam * unit`` (ties keep the cheaper tier)."""
    return np.asarray(np.argmax(P - lam * unit[None, :], axis=1), dtype=np.int64)


def lambda_sweep(P: np.ndarray, data: ReplayData, unit: np.ndarray,
                 lambdas: Sequence[float] | np.ndarray = LAMBDAS) -> list[SweepPoint]:
    """One operating point per ``lam`` (its ``cuts`` field holds ``(lam,)``)."""
    points = []
    for lam in lambdas:
        a = assign_lambda(P, unit, float(lam))
        points.append(SweepPoint((float(lam),), accuracy(data.outcomes, a), mean_cost(data.costs, a),
                                 tuple(float(s) for s in shares(a, len(data.tiers)))))
    return points


def per_tier_metrics(test: ReplayData, P: np.ndarray, unit: np.ndarray) -> dict[str, Any]:
    """Cost at 95/97/99% of the full tier's accuracy (best sweep point on these rows) and the Pareto frontier."""
    full_acc, full_cost = float(test.outcomes[:, -1].mean()), float(test.costs[:, -1].mean())
    points = lambda_sweep(P, test, unit)
    at: dict[str, Any] = {}
    for f in REDUCTION_AT:
        p = cheapest_reaching(points, f * full_acc)
        at[f"{f:g}"] = None if p is None else {"cost": p.cost, "cost_vs_full": p.cost / full_cost if full_cost else 0.0,
                                               "accuracy": p.accuracy, "shares": dict(zip(test.tiers, p.shares))}
    return {"at": at, "pareto": [p.as_dict(test.tiers) for p in pareto(points)]}


def tfidf_probabilities(train: ReplayData, test_inputs: Sequence[Any]) -> np.ndarray:
    """P(tier right) per held-out row from TF-IDF (word 1-2-grams, sublinear tf) + logistic regression (C=1)
    fitted per tier on the training rows. A tier whose training outcomes are constant predicts that constant."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
    Xtr = vec.fit_transform([text_of(x) for x in train.inputs])
    Xte = vec.transform([text_of(x) for x in test_inputs])
    out = np.empty((Xte.shape[0], len(train.tiers)))
    for j in range(len(train.tiers)):
        y = train.outcomes[:, j] >= 0.5
        if y.all() or not y.any():
            out[:, j] = float(y.mean())
            continue
        out[:, j] = LogisticRegression(C=1.0, max_iter=1000).fit(Xtr, y).predict_proba(Xte)[:, 1]
    return out
