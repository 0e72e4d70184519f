"""Issue 14 items 1 and 11 (config part): configs are bounded before any validator looks at them, and no error
message ever holds an unbounded repr; overflowing numbers and mixed key types are ConfigErrors."""

from __future__ import annotations

import time

import pytest

from tierswitch import ConfigError, Router
from tierswitch.assembly.reload import ReloadingRouter
from tierswitch.bench.spec import load_spec
from tierswitch.config import load_config

# nine levels of nine aliases each under a field a validator reports: 9**9 strings once expanded. On the code before
# this fix, the ConfigError for ``policy.tier`` took minutes and GBs to repr it.
_LEVELS = ["&a [" + ",".join(["lol"] * 9) + "]"]
_LEVELS += [f"&{chr(98 + i)} [" + ",".join([f"*{chr(97 + i)}"] * 9) + "]" for i in range(8)]
LAUGHS = "policy: {kind: fixed, tier: [" + ", ".join(_LEVELS) + "]}\n"

TIERS = {"base": lambda x: "b", "full": lambda x: "f"}


def test_billion_laughs_fails_fast_with_a_config_error(tmp_path):
    path = tmp_path / "router.yaml"
    path.write_text(LAUGHS)
    started = time.perf_counter()
    with pytest.raises(ConfigError) as info:
        Router.from_config(path, TIERS)
    assert time.perf_counter() - started < 0.5
    assert len(str(info.value)) < 400


def test_few_aliases_but_huge_expansion_is_refused_by_the_node_bound(tmp_path):
    # 5 aliases, each doubling: fine by the alias budget, refused by the expanded-node bound
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 30)}]" for i in range(1, 4)]
    lines.append("policy: {kind: fixed, tier: *a3}")
    path = tmp_path / "router.yaml"
    path.write_text("\n".join(lines))
    started = time.perf_counter()
    with pytest.raises(ConfigError, match="more than"):
        load_config(path)
    assert time.perf_counter() - started < 0.5


def test_self_referencing_alias_and_deep_nesting_are_refused(tmp_path):
    path = tmp_path / "router.yaml"
    path.write_text("policy: &p {kind: fixed, tier: base, again: *p}\n")
    with pytest.raises(ConfigError, match="itself"):
        load_config(path)
    for name, text in (("router.yaml", "policy: " + "[" * 5000 + "]" * 5000 + "\n"),
                       ("router.json", '{"policy": ' + "[" * 400_000 + "]" * 400_000 + "}"),
                       ("router.toml", "policy = " + "[" * 5000 + "]" * 5000 + "\n")):
        path = tmp_path / name
        path.write_text(text)
        started = time.perf_counter()
        with pytest.raises(ConfigError, match="deeper"):
            load_config(path)
        assert time.perf_counter() - started < 0.5


def test_a_shared_subtree_reached_deep_still_counts_its_depth():
    from tierswitch.validation import check_bounds

    leaf: list = [1]
    for _ in range(40):
        leaf = [leaf]
    outer: list = [leaf]
    for _ in range(30):
        outer = [leaf, outer]  # the same 41-level subtree, seen shallow first (remembered), then 31 levels down
    with pytest.raises(ConfigError, match="deeper"):
        check_bounds(outer, "config")
    check_bounds([leaf, leaf], "config")  # shallow sharing is fine


def test_oversized_file_is_refused_before_parsing(tmp_path):
    path = tmp_path / "router.yaml"
    path.write_text("policy: {kind: fixed, tier: base}\n" + "#" * 2_000_000 + "\n")
    with pytest.raises(ConfigError, match="bytes"):
        load_config(path)


def test_bench_spec_is_bounded_too(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(LAUGHS)
    with pytest.raises(ConfigError):
        load_spec(path)


def test_huge_dict_config_gets_a_short_message():
    big = ["x" * 1000] * 1000
    started = time.perf_counter()
    with pytest.raises(ConfigError) as info:
        Router.from_config({"policy": {"kind": "fixed", "tier": big}}, TIERS)
    assert time.perf_counter() - started < 0.5 and len(str(info.value)) < 400
    with pytest.raises(ConfigError) as info:
        Router.from_config({"policy": {"kind": "threshold", "tiers": ["base", "full"], "cuts": big}}, TIERS)
    assert len(str(info.value)) < 400


def test_reloading_router_keeps_serving_on_a_billion_laughs_file(tmp_path):
    path = tmp_path / "router.yaml"
    path.write_text("policy: {kind: fixed, tier: base}\n")
    router = ReloadingRouter(path, TIERS)
    assert router("hi").output == "b"
    path.write_text(LAUGHS)
    started = time.perf_counter()
    with pytest.raises(ConfigError):
        router.reload()
    assert time.perf_counter() - started < 0.5
    assert isinstance(router.last_error, ConfigError)
    assert router("hi").output == "b"
    router.watch(interval_s=0.01)  # the watcher survives the bad file too and keeps the old router serving
    try:
        deadline = time.monotonic() + 5
        while router.last_error is None and time.monotonic() < deadline:
            assert router("again").output == "b"
        assert router("again").output == "b"
    finally:
        router.stop()


@pytest.mark.parametrize("config", [
    {"policy": {"kind": "cascade", "thresholds": {"base": 10**400}}},
    {"policy": {"kind": "cascade", "trust": -(10**400)}},
    {"policy": {"kind": "fixed", "tier": "base", 1: "x", "y": 2}},
    {"policy": {"kind": "fixed", "tier": 10**5000}},
    {"policy": {"kind": "fixed", "tier": "base"}, "tiers": {"base": {"cost": 10**400}}},
])
def test_overflowing_numbers_and_mixed_keys_are_config_errors(config):
    with pytest.raises(ConfigError) as info:
        Router.from_config(config, TIERS)
    assert len(str(info.value)) < 400


def test_describe_is_bounded():
    from tierswitch.validation import describe

    assert describe("short") == "'short'"
    assert describe([1, 2]) == "[1, 2]"
    assert len(describe("x" * 10**6)) <= 120
    assert "bits" in describe(10**5000)

    class Broken:
        def __repr__(self) -> str:
            raise RuntimeError("no")

    assert "Broken" in describe(Broken())
    nested: list = []
    nested.append(nested)
    assert len(describe(nested)) <= 120
