"""BudgetController: holds a full-tier share, a mean cost, a cost rate or a p95 latency while traffic drifts.

The quality claims run on real data: two scikit-learn models of different strength trained on banking77 (the
session fixture ``banking77`` from tests/banking77_models.py), the project's ComplexityEstimator scoring each test
question from the cheap model's confidence (a probe) and its length.
The stream is drawn from the 3,080 test questions so that difficulty rises: the chance of drawing a question the
cheap model gets wrong climbs from 5% to 65% over 10,000 requests (seeded).
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from tests.contracts.policy_contract import PolicyContract, make_context

from tierswitch.config import register_policy
from tierswitch.errors import ConfigError
from tierswitch.estimator import ComplexityEstimator, extract_features
from tierswitch.policies import Threshold
from tierswitch.policies.budget import BudgetController, from_config
from tierswitch.policies.quantile import RedisCounters, WindowCounters, WindowQuantile
from tierswitch.router import Router
from tierswitch.tiers import SklearnTier
from tierswitch.tiers.base import CostModel
from tierswitch.types import DecisionRecord, Request, RoutingContext

register_policy("budget", "tierswitch.policies.budget:from_config")  # the line config.py gets; idempotent

N, W, TARGET = 10_000, 1_000, 0.30


def _windows(values: np.ndarray, width: int = W) -> np.ndarray:
    """Mean of every window of ``width`` consecutive values (stride 1)."""
    c = np.concatenate([[0.0], np.cumsum(values, dtype=np.float64)])
    return (c[width:] - c[:-width]) / width


@pytest.fixture(scope="module")
def banking(banking77):
    x_test, y_test = banking77.x_test, banking77.y_test
    base = SklearnTier("base", banking77.weak, cost=CostModel(per_call=0.1))
    full = SklearnTier("full", banking77.strong, cost=CostModel(per_call=1.0, per_unit=0.1))
    probes = base.predict(x_test)
    estimator = ComplexityEstimator(probe="base", length_weight=0.5)
    scores = estimator.score_many(x_test, probes)
    wrong = np.array([p.output != y for p, y in zip(probes, y_test)])
    rng = np.random.default_rng(0)
    hard_odds = 0.05 + 0.6 * np.arange(N) / N
    stream = np.where(rng.random(N) < hard_odds, rng.choice(np.flatnonzero(wrong), N),
                      rng.choice(np.flatnonzero(~wrong), N))
    return {"x": x_test, "y": y_test, "scores": scores, "stream": stream, "tiers": {"base": base, "full": full},
            "features": [extract_features(x_test[i]) for i in range(len(x_test))], "probes": probes,
            "estimator": estimator, "wrong": wrong}


def _replay(policy, data, n: int = N) -> tuple[np.ndarray, np.ndarray]:
    """Route the stream without models (scores and probe answers are precomputed); feed outcomes back.

    Every request pays the base probe; a request sent to full pays full too (the router's cost accounting).
    """
    tiers, base, full = data["tiers"], data["tiers"]["base"], data["tiers"]["full"]
    to_full, costs = np.zeros(n, dtype=bool), np.zeros(n)
    observe = getattr(policy, "observe", None)
    for k, i in enumerate(data["stream"][:n]):
        features = data["features"][i]
        ctx = RoutingContext(Request(data["x"][i], "text", str(i)), features, float(data["scores"][i]),
                             ("base", "full"), tiers)
        decision = policy.decide(ctx)
        is_full = decision.tier == "full"
        cost = base.cost_model.cost(features.length) + (full.cost_model.cost(features.length) if is_full else 0.0)
        to_full[k], costs[k] = is_full, cost
        if observe is not None:
            predictions = {"base": data["probes"][i]}
            if is_full:
                predictions["full"] = data["probes"][i]  # only the key matters to the budget: full was called
            observe(DecisionRecord(k, ctx.request, features, ctx.score, ctx.capable, decision.tier, decision.reason,
                                   decision.propensity, decision.tier, cost, 0.01, False, predictions, (), {}))
    return to_full, costs


class TestBudgetContract(PolicyContract):
    randomised = True  # decisions depend on the recent scores and on the cold-start draw
    make_policy = staticmethod(lambda: BudgetController("full_share", 0.3, tiers=("base", "distilled", "full")))


def test_window_quantile_matches_numpy_on_a_sliding_window() -> None:
    rng = np.random.default_rng(1)
    values = np.round(rng.normal(size=3000), 2)  # rounded: ties must be handled too
    q = WindowQuantile(250)
    for i, v in enumerate(values):
        q.add(v)
        if i % 97 == 0:
            window = values[max(0, i - 249): i + 1]
            for level in (0.0, 0.05, 0.5, 0.7, 0.95, 1.0):
                assert q.quantile(level) == pytest.approx(np.quantile(window, level))
            assert q.cdf(0.1) == pytest.approx(np.mean(window <= 0.1))
            assert q.cdf_below(0.1) == pytest.approx(np.mean(window < 0.1))
    with pytest.raises(ValueError):
        q.add(float("nan"))


def test_window_counters_sum_the_last_events() -> None:
    counters = WindowCounters(100, 2)
    events = np.random.default_rng(2).random((1000, 2))
    for e in events:
        counters.add(tuple(e))
    n, sums = counters.totals()
    assert n == 100
    assert sums == pytest.approx(tuple(events[-100:].sum(axis=0)))


def test_full_share_holds_on_a_drifting_stream_where_a_fixed_threshold_drifts(banking) -> None:
    controller = BudgetController("full_share", TARGET)
    to_full, _ = _replay(controller, banking)
    windows = _windows(to_full.astype(float))
    assert np.abs(windows - TARGET).max() <= 0.02, (windows.min(), windows.max())

    cut = float(np.quantile(banking["scores"][banking["stream"][:W]], 1 - TARGET))  # calibrated on the first 1,000
    fixed, _ = _replay(Threshold(["base", "full"], [cut]), banking)
    fixed_windows = _windows(fixed.astype(float))
    print(f"full share over windows of {W}: controller {windows.min():.3f}..{windows.max():.3f}, "
          f"fixed threshold {fixed_windows.min():.3f}..{fixed_windows.max():.3f}")
    assert abs(fixed_windows[0] - TARGET) <= 0.02  # calibrated right at the start ...
    assert np.abs(fixed_windows - TARGET).max() > 0.10  # ... and drifts as the stream gets harder

    status = controller.status()
    assert status["target"] == "full_share" and status["requests"] == W
    assert abs(status["distance"]) <= 0.02 and status["realised"] == pytest.approx(to_full[-W:].mean())
    assert status["threshold"] > cut  # the threshold rose with the scores


def test_mean_cost_holds_on_a_drifting_stream(banking) -> None:
    full_costs = np.array([banking["tiers"]["full"].cost_model.cost(banking["features"][i].length)
                           for i in banking["stream"]])
    target = 0.1 + TARGET * float(full_costs[:W].mean())  # the probe for everyone, full for 30%
    tolerance = 0.02 * float(full_costs.mean())  # the cost of 2 points of full-tier share
    controller = BudgetController("mean_cost", target)
    _, costs = _replay(controller, banking)
    windows = _windows(costs)
    assert np.abs(windows - target).max() <= tolerance, (target, windows.min(), windows.max())

    cut = float(np.quantile(banking["scores"][banking["stream"][:W]], 1 - TARGET))
    _, fixed_costs = _replay(Threshold(["base", "full"], [cut]), banking)
    print(f"mean cost over windows of {W} (target {target:.3f}, tolerance {tolerance:.3f}): controller "
          f"{windows.min():.3f}..{windows.max():.3f}, fixed {_windows(fixed_costs).min():.3f}.."
          f"{_windows(fixed_costs).max():.3f}")
    assert np.abs(_windows(fixed_costs) - target).max() > 5 * tolerance  # more than 10 points' worth
    assert abs(controller.status()["distance"]) <= tolerance


def test_cost_rate_token_bucket_spends_its_rate_on_an_injected_clock(banking) -> None:
    now = [0.0]
    rate = 8.0  # cost units per second; traffic is 10 requests per second
    controller = BudgetController("cost_rate", rate, burst=20.0, clock=lambda: now[0])

    class Clocked:  # advance the clock by 0.1 s before each decision: the clock is the test's, never wall time
        def decide(self, ctx):
            now[0] += 0.1
            return controller.decide(ctx)

        observe = staticmethod(controller.observe)

    to_full, costs = _replay(Clocked(), banking, n=5000)
    elapsed = now[0]
    assert costs.sum() <= rate * elapsed + 20.0  # never more than the rate plus one burst
    assert costs.sum() >= 0.95 * rate * elapsed  # and it uses its budget
    per_second = _windows(costs, 100) * 10  # spending per second over every 10 s
    assert per_second.max() <= rate * 1.35
    assert 0.1 < to_full.mean() < 0.9
    assert controller.status()["bucket"] <= 20.0


def test_latency_p95_target_is_held(banking) -> None:
    rng = np.random.default_rng(3)
    controller = BudgetController("latency_p95", 0.050, window=500)
    served = []
    for k in range(6000):
        i = banking["stream"][k]
        features = banking["features"][i]
        ctx = RoutingContext(make_context(0.0).request, features, float(banking["scores"][i]), ("base", "full"),
                             banking["tiers"])
        tier = controller.decide(ctx).tier
        # base answers in ~5-15 ms, full in ~30-80 ms (per-token time plus noise)
        latency = (0.005 if tier == "base" else 0.03) + rng.gamma(2.0, 0.002 if tier == "base" else 0.008)
        served.append((tier == "full", latency))
        predictions = {tier: banking["probes"][i]}
        controller.observe(DecisionRecord(k, ctx.request, features, ctx.score, ctx.capable, tier, "", 1.0, tier,
                                          0.0, latency, False, predictions, (), {}))
    full, latency = np.array(served).T
    for start in range(1000, 6000, 500):
        assert np.quantile(latency[start:start + 500], 0.95) <= 0.050 * 1.08
    assert 0.05 < full[1000:].mean() < 0.95  # it does send traffic to full, up to what the target allows
    assert controller.status()["p95_latency_s"] == pytest.approx(np.quantile(latency[-500:], 0.95))


def test_three_tiers_split_the_lower_share_by_weights() -> None:
    controller = BudgetController("full_share", 0.2, tiers=("base", "distilled", "full"), lower_split=(1, 1))
    rng = np.random.default_rng(4)
    chosen = []
    for k, s in enumerate(rng.random(4000)):
        ctx = make_context(float(s))
        decision = controller.decide(ctx)
        chosen.append(decision.tier)
        controller.observe(DecisionRecord(k, ctx.request, ctx.features, float(s), ctx.capable, decision.tier, "",
                                          decision.propensity, decision.tier, 0.0, 0.0, False, {}, (), {}))
    later = chosen[1000:]
    assert later.count("full") / len(later) == pytest.approx(0.2, abs=0.02)
    assert later.count("base") / len(later) == pytest.approx(0.4, abs=0.05)


def test_router_end_to_end_holds_the_share(banking) -> None:
    """Through the real Router: SklearnTier tiers, the probe estimator, and the controller as a decision hook."""
    controller = BudgetController("full_share", TARGET)
    router = Router(list(banking["tiers"].values()), controller, estimator=banking["estimator"], cache=None,
                    hooks=[controller.observe])
    served = [router(banking["x"][i]).tier for i in banking["stream"][:3000]]
    windows = _windows(np.array([t == "full" for t in served], dtype=float))
    assert np.abs(windows - TARGET).max() <= 0.02
    assert router.stats.snapshot().get("hook_errors", 0) == 0


def test_concurrent_decisions_and_observations_stay_consistent() -> None:
    controller = BudgetController("full_share", 0.3, window=50_000)
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def worker(seed: int) -> None:
        rng = np.random.default_rng(seed)
        try:
            start.wait()
            for k in range(2000):
                ctx = make_context(float(rng.random()), ("base", "full"))
                d = controller.decide(ctx)
                controller.observe(DecisionRecord(k, ctx.request, ctx.features, ctx.score, ctx.capable, d.tier, "",
                                                  d.propensity, d.tier, 1.0, 0.0, False, {}, (), {}))
        except BaseException as exc:  # surfaced below: a thread's failure must fail the test
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    status = controller.status()
    assert status["requests"] == 8000 and status["mean_cost"] == pytest.approx(1.0)
    assert status["full_share"] == pytest.approx(0.3, abs=0.02)


def test_redis_counters_are_shared_by_a_fleet(redis_url, redis_prefix) -> None:
    now = [1000.0]
    make = lambda: RedisCounters("share", url=redis_url, namespace=redis_prefix, window_s=60, bucket_s=1,  # noqa: E731
                                 refresh_s=0.0, clock=lambda: now[0])
    one, two = make(), make()
    routers = [BudgetController("full_share", 0.3, counters=c) for c in (one, two)]
    rng = np.random.default_rng(5)
    for k in range(2000):
        now[0] += 0.01
        controller = routers[k % 2]  # two routers, one fleet budget
        ctx = make_context(float(rng.random()), ("base", "full"))
        d = controller.decide(ctx)
        controller.observe(DecisionRecord(k, ctx.request, ctx.features, ctx.score, ctx.capable, d.tier, "",
                                          d.propensity, d.tier, 0.0, 0.0, False, {}, (), {}))
    one.flush()
    n, full, _ = one.totals()
    assert n == 2000  # both routers' requests, counted once each, in Redis
    assert full / n == pytest.approx(0.3, abs=0.02)
    assert all(key.decode().startswith(redis_prefix + ":budget:share:") for key in one._redis().scan_iter(
        match=f"{redis_prefix}:*"))
    now[0] += 120  # past the window: the buckets age out of the totals
    one.flush()
    assert one.totals()[0] == 0
    assert one.clear() >= 1


def test_redis_down_is_never_a_failed_request() -> None:
    counters = RedisCounters("down", url="redis://127.0.0.1:1/0", refresh_s=0.0)
    controller = BudgetController("full_share", 0.3, counters=counters)
    for k in range(50):
        ctx = make_context(k / 50, ("base", "full"))
        d = controller.decide(ctx)
        controller.observe(DecisionRecord(k, ctx.request, ctx.features, ctx.score, ctx.capable, d.tier, "",
                                          d.propensity, d.tier, 0.0, 0.0, False, {}, (), {}))
    assert counters.errors >= 1
    assert counters.totals()[0] == 50  # counted locally until Redis is back


def test_config_round_trip_and_errors_name_the_field() -> None:
    config = {"kind": "budget", "target": "mean_cost", "value": 2.5, "tiers": ["base", "distilled", "full"],
              "window": 500, "lower_split": [0.25, 0.75]}
    policy = from_config(config)
    assert from_config(policy.to_config()).to_config() == policy.to_config()
    assert policy.to_config()["lower_split"] == [0.25, 0.75]
    redis_config = {"kind": "budget", "target": "full_share", "value": 0.3,
                    "counters": {"kind": "redis", "name": "fleet", "url": "redis://127.0.0.1:6379/15"}}
    assert from_config(redis_config).to_config()["counters"]["name"] == "fleet"
    bad = [
        ({"kind": "budget", "value": 0.3}, "policy.target"),
        ({"kind": "budget", "target": "cheap", "value": 0.3}, "policy.target"),
        ({"kind": "budget", "target": "full_share", "value": 1.5}, "policy.value"),
        ({"kind": "budget", "target": "mean_cost", "value": -1}, "policy.value"),
        ({"kind": "budget", "target": "full_share", "value": 0.3, "windw": 10}, "policy.windw"),
        ({"kind": "budget", "target": "full_share", "value": 0.3, "window": 0}, "policy.window"),
        ({"kind": "budget", "target": "full_share", "value": 0.3, "burst": 5}, "policy.burst"),
        ({"kind": "budget", "target": "full_share", "value": 0.3, "tiers": ["full"]}, "policy.tiers"),
        ({"kind": "budget", "target": "full_share", "value": 0.3, "lower_split": [1, 2]}, "policy.lower_split"),
        ({"kind": "budget", "target": "full_share", "value": 0.3, "lower_split": ["x"]}, "policy.lower_split"),
        ({"kind": "budget", "target": "full_share", "value": 0.3, "counters": {"kind": "redis"}},
         "policy.counters.name"),
        ({"kind": "budget", "target": "full_share", "value": 0.3, "counters": {"kind": "disk"}},
         "policy.counters.kind"),
        ({"kind": "budget", "target": "full_share", "value": 0.3,
          "counters": {"kind": "redis", "name": "f", "window_s": float("inf")}}, "policy.counters.window_s"),
        ({"kind": "budget", "target": "full_share", "value": 0.3,
          "counters": {"kind": "redis", "name": "f", "refresh_s": float("nan")}}, "policy.counters.refresh_s"),
    ]
    for config, field in bad:
        with pytest.raises(ConfigError) as info:
            from_config(config)
        assert info.value.field == field, (config, info.value)
    with pytest.raises(ConfigError) as info:
        from_config({"kind": "budget", "target": "x", "value": 1}, "policy.policies[1]")
    assert info.value.field == "policy.policies[1].target"


def test_a_zero_budget_never_calls_the_controlled_tier_and_unscored_requests_rank_hardest() -> None:
    controller = BudgetController("full_share", 0.0, min_samples=5)
    for k in range(300):  # rising scores: each new one is the highest seen so far
        ctx = make_context(k / 300, ("base", "full"))
        d = controller.decide(ctx)
        assert d.tier == "base", (k, d)
        controller.observe(DecisionRecord(k, ctx.request, ctx.features, ctx.score, ctx.capable, d.tier, "",
                                          d.propensity, d.tier, 0.0, 0.0, False, {}, (), {}))
    everyone = BudgetController("full_share", 0.5, min_samples=5)
    for k in range(50):
        everyone.decide(make_context(k / 50, ("base", "full")))
    assert everyone.decide(make_context(float("nan"), ("base", "full"))).tier == "full"
    assert everyone.decide(make_context(0.2, ("base",))).tier == "base"  # capability wins over the band
