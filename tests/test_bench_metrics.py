"""Metric functions against hand-computed cases, and sweeps against the Threshold policy's rule."""

from __future__ import annotations

import bisect
import math

import numpy as np
import pytest

from tierswitch.bench.evaluate import Target, parse_target
from tierswitch.bench.metrics import (
    RouteCurve,
    accuracy,
    apgr,
    cost_reduction,
    cpt,
    mean_cost,
    oracle,
    pgr,
    random_routellm,
    routellm_curve,
    shares,
)
from tierswitch.bench.split import holdout, kfold
from tierswitch.bench.sweep import (
    NEVER,
    SweepPoint,
    assign_by_cuts,
    best_within,
    candidate_cuts,
    cheapest_reaching,
    pareto,
    random_at_shares,
    sweep,
)
from tierswitch.errors import ConfigError

OUT = np.array([[1, 1], [0, 1], [0, 0], [1, 0]], dtype=float)
COST = np.array([[1, 10], [1, 10], [2, 20], [1, 10]], dtype=float)


def test_accuracy_cost_shares_by_hand():
    assign = np.array([0, 1, 1, 0])
    assert accuracy(OUT, assign) == pytest.approx((1 + 1 + 0 + 1) / 4)
    assert mean_cost(COST, assign) == pytest.approx((1 + 10 + 20 + 1) / 4)
    assert shares(assign, 2).tolist() == [0.5, 0.5]
    assert cost_reduction(8.0, 12.75) == pytest.approx(1 - 8 / 12.75)
    assert cost_reduction(3.0, 0.0) == 0.0


def test_pgr_by_hand():
    assert pgr(0.75, 0.5, 1.0) == pytest.approx(0.5)
    assert pgr(0.5, 0.5, 1.0) == 0.0
    assert math.isnan(pgr(0.7, 0.6, 0.6))


def test_oracle_takes_the_cheapest_right_tier():
    best = oracle(OUT, COST)
    assert best.assign.tolist() == [0, 1, 0, 0]  # none right -> cheapest
    assert best.accuracy == pytest.approx(0.75)
    assert best.cost == pytest.approx((1 + 10 + 2 + 1) / 4)
    assert best.shares.tolist() == [0.75, 0.25]
    three = oracle(np.array([[0, 1, 1], [0, 0, 1], [1, 1, 1]], dtype=float), np.ones((3, 3)))
    assert three.assign.tolist() == [1, 2, 0]


def test_routellm_curve_apgr_and_cpt_by_hand():
    scores = np.array([0.1, 0.2, 0.3, 0.4])
    weak, strong = np.array([1.0, 1, 0, 0]), np.array([1.0, 1, 1, 0])
    curve = routellm_curve(scores, weak, strong, n_points=5)
    # thresholds at the quantiles 0.1, 0.175, 0.25, 0.325 (>=) and 0.4 (>, so nobody goes strong)
    assert curve.strong_share.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert curve.accuracy.tolist() == [0.5, 0.5, 0.75, 0.75, 0.75]
    assert (curve.weak_acc, curve.strong_acc) == (0.5, 0.75)
    # area = 0.125 + 0.15625 + 0.1875 + 0.1875 = 0.65625; (0.65625 - 0.5) / 0.25
    assert apgr(curve) == pytest.approx(0.625)
    assert cpt(curve, 0.5) == pytest.approx(0.375)  # target 0.625, halfway between (0.25, 0.5) and (0.5, 0.75)
    assert cpt(curve, 1.0) == pytest.approx(0.5)
    assert cpt(curve, 0.0) == 0.0


def test_apgr_matches_a_direct_trapezoid_reference():
    rng = np.random.default_rng(3)
    weak, strong = (rng.random(500) < 0.6).astype(float), (rng.random(500) < 0.85).astype(float)
    scores = rng.random(500) + 0.3 * (strong - weak)
    curve = routellm_curve(scores, weak, strong)
    x, y = curve.strong_share, curve.accuracy
    area = np.trapezoid(y, x) if hasattr(np, "trapezoid") else np.trapz(y, x)
    span = x[-1] - x[0]
    expected = (area - weak.mean() * span) / ((strong.mean() - weak.mean()) * span)
    assert apgr(curve) == pytest.approx(expected, abs=1e-12)
    assert len(x) == 11 and x[0] == 0.0 and x[-1] == 1.0


def test_cpt_on_a_non_monotone_curve_takes_the_first_crossing_and_nan_when_unreached():
    curve = RouteCurve(np.zeros(3), np.array([0.0, 0.5, 1.0]), np.array([0.5, 0.9, 0.8]), 0.5, 0.8)
    assert cpt(curve, 1.0) == pytest.approx(0.5 * 0.3 / 0.4)
    flat = RouteCurve(np.zeros(2), np.array([0.0, 1.0]), np.array([0.5, 0.6]), 0.5, 0.8)
    assert math.isnan(cpt(flat, 0.9))


def test_random_router_is_about_half_on_synthetic_data():
    rng = np.random.default_rng(12345)  # not one of the router's seeds: its scores must be independent of the data
    weak, strong = (rng.random(4000) < 0.6).astype(float), (rng.random(4000) < 0.9).astype(float)
    out = random_routellm(weak, strong, seeds=range(5))
    assert out["apgr"] == pytest.approx(0.5, abs=0.02)
    assert out["cpt50"] == pytest.approx(0.5, abs=0.03)
    assert out["apgr_std"] < 0.03


def test_assign_by_cuts_is_the_threshold_policy_rule():
    scores = np.array([0.0, 0.2, 0.5, 0.5, 0.7, 1.0])
    cuts = (0.2, 0.5)
    assert assign_by_cuts(scores, cuts).tolist() == [bisect.bisect_right(cuts, s) for s in scores]
    assert assign_by_cuts(scores, cuts).tolist() == [0, 1, 2, 2, 2, 2]
    assert assign_by_cuts(scores, (NEVER,)).tolist() == [0] * 6
    assert assign_by_cuts(scores, (0.0,)).tolist() == [1] * 6


def test_sweep_covers_every_extreme_and_pareto_is_non_dominated():
    rng = np.random.default_rng(1)
    out = (rng.random((200, 3)) < [0.5, 0.7, 0.9]).astype(float)
    cost = np.tile([1.0, 3.0, 10.0], (200, 1))
    scores = rng.random(200)
    points = sweep(scores, out, cost, levels=11)
    assert len(points) == math.comb(len(candidate_cuts(scores, 11)) + 1, 2)
    tier_alone = {tuple(round(s, 9) for s in p.shares): p for p in points}
    for j in range(3):
        only = tuple(1.0 if k == j else 0.0 for k in range(3))
        assert tier_alone[only].accuracy == pytest.approx(out[:, j].mean())
    front = pareto(points)
    assert [p.cost for p in front] == sorted(p.cost for p in front)
    assert all(b.accuracy > a.accuracy for a, b in zip(front, front[1:]))
    for p in points:  # nothing beats a frontier point on both axes
        assert not any(q.cost < p.cost and q.accuracy > p.accuracy for q in points) or p not in front


def test_picking_points_for_targets():
    pts = [SweepPoint((0.1,), 0.70, 2.0, (0.8, 0.2)), SweepPoint((0.2,), 0.80, 5.0, (0.5, 0.5)),
           SweepPoint((0.3,), 0.80, 4.0, (0.6, 0.4)), SweepPoint((0.4,), 0.90, 9.0, (0.1, 0.9))]
    assert cheapest_reaching(pts, 0.8).cuts == (0.3,)
    assert cheapest_reaching(pts, 0.95) is None
    assert best_within(pts, max_cost=5.0).cuts == (0.3,)  # equal accuracy: the cheaper one
    assert best_within(pts, max_full_share=0.3).cuts == (0.1,)
    assert Target("accuracy", 0.8).pick(pts, full_accuracy=1.0).cuts == (0.3,)
    assert Target("accuracy", 0.9).pick(pts, full_accuracy=0.9).cuts == (0.4,)
    assert Target("cost", 8.0).pick(pts, 0.9).cuts == (0.3,)
    assert Target("full_share", 0.95).pick(pts, 0.9).cuts == (0.4,)
    assert Target("cost", 1.0).pick(pts, 0.9) is None


def test_random_at_shares_keeps_the_shares_exactly():
    out = np.array([[1, 0], [0, 1]] * 50, dtype=float)
    cost = np.tile([1.0, 5.0], (100, 1))
    acc, mean = random_at_shares(out, cost, (0.3, 0.7), seeds=range(4))
    assert mean == pytest.approx(0.3 * 1 + 0.7 * 5)
    assert acc == pytest.approx(0.5, abs=0.1)


@pytest.mark.parametrize("text,kind,value", [("accuracy=0.95", "accuracy", 0.95), ("cost=0.002", "cost", 0.002),
                                             ("full_share=0.3", "full_share", 0.3)])
def test_parse_target(text, kind, value):
    assert parse_target(text) == Target(kind, value)


@pytest.mark.parametrize("text", ["accuracy", "speed=3", "accuracy=abc", "accuracy=1.5", "cost=-1", "full_share=2"])
def test_parse_target_refuses_bad_targets(text):
    with pytest.raises(ConfigError) as info:
        parse_target(text)
    assert info.value.field == "target"


def test_holdout_and_kfold_partition_the_rows_reproducibly():
    a, b = holdout(101, 0.5, seed=7), holdout(101, 0.5, seed=7)
    assert a.train.tolist() == b.train.tolist() and len(a.test) == 50
    assert sorted(a.train.tolist() + a.test.tolist()) == list(range(101))
    assert holdout(101, 0.5, seed=8).test.tolist() != a.test.tolist()
    folds = kfold(10, 3, seed=0)
    assert sorted(i for f in folds for i in f.test.tolist()) == list(range(10))
    for f in folds:
        assert set(f.train.tolist()).isdisjoint(f.test.tolist()) and len(f.train) + len(f.test) == 10
    described = a.describe([f"r{i}" for i in range(101)])
    assert set(described["train_ids"]).isdisjoint(described["test_ids"])
    with pytest.raises(ConfigError):
        holdout(10, 1.0)
    with pytest.raises(ConfigError):
        kfold(3, 5)
