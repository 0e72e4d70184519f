"""Config files: policies, estimators, caches and tiers from YAML/TOML; every error names its field."""

from __future__ import annotations

import pytest

from tierswitch import Cascade, ConfigError, FirstOf, Router, Threshold
from tierswitch.config import load_config, policy_from_config


def _tiers():
    return {"base": lambda x: ("b", [0.9, 0.1]), "distilled": lambda x: ("d", [0.6, 0.4]), "full": lambda x: "f"}


def test_yaml_config_builds_and_routes(tmp_path):
    path = tmp_path / "router.yaml"
    path.write_text(
        "tiers:\n"
        "  base: {cost: {per_call: 1.0}, modalities: [text], max_length: 8}\n"
        "  distilled: {cost: 2.0}\n"
        "  full: {cost: 20.0}\n"
        "policy: {kind: cascade, thresholds: {base: 0.85, distilled: 0.8}}\n"
        "estimator: {kind: complexity, length_scale: 64}\n"
        "cache: {kind: memory, max_entries: 100, ttl_s: 60}\n"
    )
    router = Router.from_config(path, _tiers())
    assert router.tier_order == ("base", "distilled", "full")
    out = router("short")
    assert (out.output, out.tier, out.cost) == ("b", "base", 1.0)
    long = router("x" * 100)  # over base's max_length: distilled (0.6 < 0.8) escalates to full
    assert long.tier == "full" and long.cost == 22.0


def test_toml_config(tmp_path):
    path = tmp_path / "router.toml"
    path.write_text('[policy]\nkind = "threshold"\ntiers = ["base", "full"]\ncuts = [0.5]\n'
                    '[tiers.base]\ncost = 1.0\n[tiers.full]\ncost = 5.0\n')
    try:
        import tomllib  # noqa: F401
    except ModuleNotFoundError:  # Python 3.10 (supported): a clear message instead
        with pytest.raises(ConfigError, match="YAML"):
            Router.from_config(path, {"base": lambda x: "b", "full": lambda x: "f"})
        return
    router = Router.from_config(path, {"base": lambda x: "b", "full": lambda x: "f"})
    assert isinstance(router.policy, Threshold) and router("hi").output == "b"


def test_nested_policy_trees():
    policy = policy_from_config({"kind": "first_of", "policies": [{"kind": "fixed", "tier": "base"},
                                                                  {"kind": "cascade", "thresholds": {"base": 0.5}}]})
    assert isinstance(policy, FirstOf) and isinstance(policy.policies[1], Cascade)


@pytest.mark.parametrize(
    "config, field",
    [
        ({"policy": {"kind": "nope"}}, "policy.kind"),
        ({"policy": {"tier": "base"}}, "policy.kind"),
        ({"policy": {"kind": "fixed", "tier": 3}}, "policy.tier"),
        ({"policy": {"kind": "threshold", "tiers": ["base", "full"], "cuts": "0.5"}}, "policy.cuts"),
        ({"policy": {"kind": "threshold", "tiers": ["base", "full"], "cuts": [0.5, 0.6]}}, "policy.cuts"),
        ({"policy": {"kind": "cascade", "thresholds": {"base": 1.5}}}, "policy.thresholds.base"),
        ({"policy": {"kind": "cascade", "thresholds": {"base": "high"}}}, "policy.thresholds.base"),
        ({"policy": {"kind": "cascade", "colour": 1}}, "policy.colour"),
        ({"policy": {"kind": "first_of", "policies": [{"kind": "fixed"}]}}, "policy.policies[0].tier"),
        ({"policy": {"kind": "fixed", "tier": "base"}, "tiers": {"base": {"cost": -1}}}, "tiers.base.cost"),
        ({"policy": {"kind": "fixed", "tier": "base"}, "tiers": {"base": {"cost": {"per_unit": "x"}}}},
         "tiers.base.cost.per_unit"),
        ({"policy": {"kind": "fixed", "tier": "base"}, "tiers": {"base": {"modalities": ["smell"]}}},
         "tiers.base.modalities"),
        ({"policy": {"kind": "fixed", "tier": "base"}, "tiers": {"base": {"max_length": 0}}}, "tiers.base.max_length"),
        ({"policy": {"kind": "fixed", "tier": "base"}, "tiers": {"base": {}, "ghost": {}}}, "tiers.ghost"),
        ({"policy": {"kind": "fixed", "tier": "base"}, "estimator": {"kind": "complexity", "length_scale": -3}},
         "estimator.length_scale"),
        ({"policy": {"kind": "fixed", "tier": "base"}, "cache": {"kind": "disk"}}, "cache.kind"),
        ({"policy": {"kind": "fixed", "tier": "base"}, "cache": {"kind": "memory", "max_entries": 0}},
         "cache.max_entries"),
        ({"policy": {"kind": "fixed", "tier": "base"}, "extra": 1}, "config.extra"),
        ({}, "policy"),
    ],
)
def test_broken_configs_name_the_field(config, field):
    tiers = {"base": lambda x: "b", "full": lambda x: "f"}
    if "tiers" in config:
        tiers = {name: (lambda x: "t") for name in config["tiers"] if name != "ghost"}
    with pytest.raises(ConfigError) as info:
        Router.from_config(config, tiers)
    assert info.value.field == field, str(info.value)


def test_policy_referring_to_a_missing_tier_is_refused():
    with pytest.raises(ConfigError, match="unknown tier"):
        Router.from_config({"policy": {"kind": "fixed", "tier": "gpu"}}, {"base": lambda x: "b"})


def test_unreadable_and_unsafe_files(tmp_path):
    with pytest.raises(ConfigError):
        load_config(tmp_path / "missing.yaml")
    unsafe = tmp_path / "unsafe.yaml"
    unsafe.write_text("policy: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="cannot parse"):
        load_config(unsafe)
    ini = tmp_path / "x.ini"
    ini.write_text("[policy]\n")
    with pytest.raises(ConfigError, match="format"):
        load_config(ini)


def test_redis_cache_url_from_the_environment(monkeypatch, redis_url):
    from tierswitch.cache.redis import RedisCache

    monkeypatch.setenv("TIERSWITCH_TEST_REDIS", redis_url)
    router = Router.from_config({"policy": {"kind": "fixed", "tier": "base"},
                                 "cache": {"kind": "redis", "url_env": "TIERSWITCH_TEST_REDIS",
                                           "namespace": "tierswitch-test-urlenv"}},
                                {"base": lambda x: "b"})
    assert isinstance(router.cache, RedisCache)
    try:
        assert router("hello").output == "b"
    finally:
        router.cache.clear()
    with pytest.raises(ConfigError) as info:
        Router.from_config({"policy": {"kind": "fixed", "tier": "base"},
                            "cache": {"kind": "redis", "url_env": "TIERSWITCH_UNSET_VARIABLE"}},
                           {"base": lambda x: "b"})
    assert info.value.field == "cache.url_env"
