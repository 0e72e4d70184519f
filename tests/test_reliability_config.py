"""Reliability configs and fallback plans: validation (types, negatives, unknown tiers, cycles) and the order."""

from __future__ import annotations

import pytest

from tierswitch import CallableTier
from tierswitch.errors import ConfigError
from tierswitch.reliability import FallbackPlan, Guarded, default_next, fallback_from_config, guard_tiers_from_config

NAMES = ["base", "distilled", "full"]


def tiers():
    return [CallableTier(n, str) for n in NAMES]


def test_reliability_section_wraps_tiers_with_defaults_overridden_per_tier():
    out = guard_tiers_from_config(tiers(), {
        "default": {"timeout_s": 2.0, "retries": 1, "backoff": {"base_s": 0.01, "max_s": 0.1}},
        "full": {"timeout_s": 10, "breaker": {"failures": 4, "window_s": 30, "cooldown_s": 5}},
    })
    assert all(isinstance(t, Guarded) for t in out)
    base, _, full = out
    assert (base.timeout_s, base.retries, base.breaker) == (2.0, 1, None)
    assert (full.timeout_s, full.retries, full.breaker.failures, full.backoff.max_s) == (10.0, 1, 4, 0.1)
    only_full = guard_tiers_from_config(tiers(), {"full": {"retries": 2}})
    assert [isinstance(t, Guarded) for t in only_full] == [False, False, True]


@pytest.mark.parametrize("config, field", [
    ({"default": {"timeout_s": "fast"}}, "reliability.default.timeout_s"),
    ({"default": {"timeout_s": -1}}, "reliability.default.timeout_s"),
    ({"base": {"retries": 1.5}}, "reliability.base.retries"),
    ({"base": {"retries": -2}}, "reliability.base.retries"),
    ({"base": {"retry_timeouts": "yes"}}, "reliability.base.retry_timeouts"),
    ({"base": {"breaker": {"failures": 0}}}, "reliability.base.breaker.failures"),
    ({"base": {"breaker": {"cooldown_s": float("nan")}}}, "reliability.base.breaker.cooldown_s"),
    ({"base": {"breaker": [3]}}, "reliability.base.breaker"),
    ({"base": {"backoff": {"factor": 0.5}}}, "reliability.base.backoff.factor"),
    ({"base": {"backoff": {"base_s": -0.1}}}, "reliability.base.backoff.base_s"),
    ({"base": {"timeout": 1}}, "reliability.base.timeout"),
    ({"gpt5": {"timeout_s": 1}}, "reliability.gpt5"),
    ({"base": "fast"}, "reliability.base"),
    ([1, 2], "reliability"),
])
def test_bad_reliability_configs_name_the_field(config, field):
    with pytest.raises(ConfigError) as info:
        guard_tiers_from_config(tiers(), config)
    assert info.value.field == field


def test_fallback_plan_degrades_and_skips_incapable_or_tried_tiers():
    plan = FallbackPlan({"full": ["distilled", "base"], "distilled": []}, NAMES)
    assert plan.next_after("full", NAMES, ["full"]) == "distilled"
    assert plan.next_after("full", ["base", "full"], ["full"]) == "base"  # distilled cannot take the input
    assert plan.next_after("distilled", NAMES, ["distilled"]) is None  # [] forbids a fallback
    jump = FallbackPlan({"base": "full", "full": ["distilled"]}, NAMES)
    assert jump.next_after("base", NAMES, ["base"]) == "full"
    assert jump.next_after("base", NAMES, ["base", "full"]) == "distilled"  # full tried: its own fallbacks next
    chain = FallbackPlan({"base": ["distilled"]}, NAMES)
    assert chain.next_after("distilled", NAMES, ["base", "distilled"]) == "full"  # unnamed: built-in rule


def test_default_rule_goes_up_then_down():
    assert default_next("base", NAMES, ["base"]) == "distilled"
    assert default_next("full", NAMES, ["full"]) == "distilled"
    assert default_next("full", NAMES, ["base", "distilled", "full"]) is None


@pytest.mark.parametrize("order, field, message", [
    ({"base": ["full"], "full": ["distilled"], "distilled": ["base"]}, "router.fallback.base",
     "cycle base -> full -> distilled -> base"),
    ({"full": ["distilled"], "distilled": "full"}, "router.fallback.full", "cycle full -> distilled -> full"),
    ({"base": ["base"]}, "router.fallback.base", "itself"),
    ({"base": ["gpt5"]}, "router.fallback.base", "unknown tier 'gpt5'"),
    ({"gpt5": ["base"]}, "router.fallback.gpt5", "unknown tier"),
    ({"base": [1]}, "router.fallback.base", "tier name"),
    ({"base": ["full", "full"]}, "router.fallback.base", "twice"),
])
def test_bad_fallback_plans_are_config_errors(order, field, message):
    with pytest.raises(ConfigError, match=message) as info:
        FallbackPlan(order, NAMES)
    assert info.value.field == field


def test_fallback_from_config_accepts_bools_and_mappings_only():
    assert fallback_from_config(True, NAMES) is True and fallback_from_config(False, NAMES) is False
    assert isinstance(fallback_from_config({"full": ["base"]}, NAMES), FallbackPlan)
    with pytest.raises(ConfigError, match="true, false or a mapping"):
        fallback_from_config("yes", NAMES)


def test_the_router_follows_a_fallback_plan():
    from tierswitch import Fixed, Router
    from tierswitch.errors import AllTiersFailed

    def down(x):
        raise RuntimeError("full is down")

    def make(fallback):
        return Router([CallableTier("base", lambda x: "base"), CallableTier("distilled", lambda x: "distilled"),
                       CallableTier("full", down)], Fixed("full"), cache=None, fallback=fallback)

    assert make(True)("q").tier == "distilled"  # built-in rule: the strongest cheaper tier
    routed = make({"full": ["base"]})("q")  # the plan degrades straight to base
    assert routed.tier == "base" and [s.kind for s in routed.trace][-3:] == ["fallback", "call", "accept"]
    with pytest.raises(AllTiersFailed):
        make({"full": []})("q")
    with pytest.raises(ConfigError, match="cycle"):
        make({"base": ["full"], "full": ["base"]})


def test_router_from_config_guards_tiers_from_the_reliability_section():
    from tierswitch import Router

    config = {"policy": {"kind": "fixed", "tier": "full"},
              "tiers": {"base": {"cost": 1.0}, "full": {"cost": 10.0}},
              "reliability": {"default": {"retries": 1}, "full": {"timeout_s": 2.0, "breaker": {"failures": 3}}},
              "router": {"fallback": {"full": ["base"]}}}
    router = Router.from_config(config, {"base": str.lower, "full": str.upper})
    full = router.tiers["full"]
    assert isinstance(full, Guarded) and full.timeout_s == 2.0 and full.breaker.failures == 3
    assert full.cost_model.per_call == 10.0 and router("Q").output == "Q"
    with pytest.raises(ConfigError) as info:
        Router.from_config({**config, "reliability": {"full": {"timeout_s": -1}}}, {"base": str, "full": str})
    assert info.value.field == "reliability.full.timeout_s"
