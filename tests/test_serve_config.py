"""The gateway's config: tiers built from config (``assembly.tiers``) and the ``gateway:`` section, every error a
``ConfigError`` naming its field; the gateway layer imports only downwards."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tierswitch.assembly.tiers import PythonTier, split_tiers, tiers_from_config
from tierswitch.errors import ConfigError
from tierswitch.serve.auth import identify
from tierswitch.serve.errors import ApiError
from tierswitch.serve.settings import hash_key, parse_gateway

SRC = Path(__file__).resolve().parents[1] / "src" / "tierswitch"


def test_python_tiers_from_config() -> None:
    tiers = tiers_from_config({"base": {"kind": "python", "function": "tests.gateway_tiers:base", "cost": 2},
                               "full": {"kind": "python", "function": "tests.gateway_tiers:full",
                                        "stream": "tests.gateway_tiers:full_stream", "version": 3}})
    assert list(tiers) == ["base", "full"]
    assert isinstance(tiers["full"], PythonTier) and tiers["full"].streams and tiers["full"].is_async
    assert not tiers["base"].streams and tiers["base"].cost_model.per_call == 2 and tiers["full"].version == "3"
    rest, _ = split_tiers({"tiers": {"base": {"kind": "python", "function": "tests.gateway_tiers:base"}},
                           "policy": {"kind": "fixed", "tier": "base"}})
    assert rest["tiers"] == {"base": {}}


@pytest.mark.parametrize(("tiers", "field"), [
    ({}, "tiers"),
    ({"a": {"function": "tests.gateway_tiers:base"}}, "tiers.a.kind"),
    ({"a": {"kind": "java"}}, "tiers.a.kind"),
    ({"a": {"kind": "python"}}, "tiers.a.function"),
    ({"a": {"kind": "python", "function": "no_colon"}}, "tiers.a.function"),
    ({"a": {"kind": "python", "function": "no.such.module:f"}}, "tiers.a.function"),
    ({"a": {"kind": "python", "function": "tests.gateway_tiers:nothing"}}, "tiers.a.function"),
    ({"a": {"kind": "python", "function": "tests.gateway_tiers:_clients"}}, "tiers.a.function"),
    ({"a": {"kind": "python", "function": "tests.gateway_tiers:base", "colour": 1}}, "tiers.a.colour"),
    ({"a": {"kind": "python", "function": "tests.gateway_tiers:base", "cost": -1}}, "tiers.a.cost"),
    ({"a": {"kind": "openai", "model": "m"}}, "tiers.a.base_url"),
])
def test_tier_config_errors_name_the_field(tiers, field) -> None:
    with pytest.raises(ConfigError) as caught:
        tiers_from_config(tiers)
    assert caught.value.field == field


def test_gateway_section(monkeypatch) -> None:
    monkeypatch.setenv("KEYS", f"alice={hash_key('k1')}, {hash_key('k2')}")
    settings = parse_gateway({"auth": {"keys_env": "KEYS"}, "limits": {
        "rate": {"requests": 10, "per_s": 1}, "keys": {"alice": {"budget": {"cost": 5}}}},
        "routes": {"strict": {"policy": {"kind": "fixed", "tier": "full"}}}}, ["base", "full"])
    assert sorted(settings.keys.values()) == sorted(["alice", hash_key("k2")[:12]])
    alice = settings.limits_for("alice")
    assert alice.rate is not None and alice.rate.amount == 10 and alice.budget is not None and alice.budget.per_s == 60
    assert settings.limits_for("other").budget is None and "strict" in settings.routes
    assert identify(settings.keys, "Bearer k1") == "alice"
    for header in (None, "Bearer ", "Basic k1", "Bearer k3"):
        with pytest.raises(ApiError) as caught:
            identify(settings.keys, header)
        assert caught.value.status == 401
    assert identify({}, None) == "anonymous"


@pytest.mark.parametrize(("section", "field"), [
    ({"colour": 1}, "gateway.colour"),
    ({"auth": {}}, "gateway.auth.keys_env"),
    ({"auth": {"keys_env": "UNSET_VAR_FOR_TEST"}}, "gateway.auth.keys_env"),
    ({"auth": {"keys_env": "BAD_KEYS"}}, "gateway.auth.keys_env"),
    ({"limits": {"max_body_bytes": 0}}, "gateway.limits.max_body_bytes"),
    ({"limits": {"timeout_s": "soon"}}, "gateway.limits.timeout_s"),
    ({"limits": {"rate": {"requests": 1.5}}}, "gateway.limits.rate.requests"),
    ({"limits": {"rate": {"requests": 5, "per": 1}}}, "gateway.limits.rate.per"),
    ({"limits": {"budget": {"per_s": 1}}}, "gateway.limits.budget.cost"),
    ({"routes": {"base": {"policy": {"kind": "fixed", "tier": "base"}}}}, "gateway.routes.base"),
    ({"routes": {"tierswitch/auto": {"policy": {}}}}, "gateway.routes.tierswitch/auto"),
    ({"routes": {"r": {}}}, "gateway.routes.r.policy"),
    ({"threads": 0}, "gateway.threads"),
])
def test_gateway_config_errors_name_the_field(monkeypatch, section, field) -> None:
    monkeypatch.setenv("BAD_KEYS", "not-a-digest")
    monkeypatch.delenv("UNSET_VAR_FOR_TEST", raising=False)
    with pytest.raises(ConfigError) as caught:
        parse_gateway(section, ["base", "full"])
    assert caught.value.field == field


def test_a_bad_route_policy_names_its_route(tmp_path) -> None:
    from tierswitch.serve.state import Gateway

    path = tmp_path / "r.yaml"
    path.write_text("tiers: {base: {kind: python, function: 'tests.gateway_tiers:base'}}\n"
                    "policy: {kind: fixed, tier: base}\n"
                    "gateway: {routes: {r1: {policy: {kind: cascade, thresholds: {base: 7}}}}}\n")
    with pytest.raises(ConfigError) as caught:
        Gateway(path).current()
    assert caught.value.field == "gateway.routes.r1.policy.thresholds.base"


def test_serve_and_demo_llm_import_only_downwards() -> None:
    """Layer 4 (serve, demo/llm) may import anything; assembly/tiers (layer 3) nothing from layer 4."""
    tree = ast.parse((SRC / "assembly" / "tiers.py").read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not {m for m in imported if m.split(".")[1:2] and m.split(".")[1] in ("serve", "demo", "cli", "testing")}
    for path in (SRC / "serve").glob("*.py"):
        tree = ast.parse(path.read_text())
        modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert not {m for m in modules if m.startswith(("tierswitch.demo", "tierswitch.cli"))}, path
