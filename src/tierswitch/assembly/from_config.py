"""Build a ``Router`` from a config file or dict plus the tiers (or plain inference functions) given in code."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tierswitch.config import cache_from_config, estimator_from_config, load_config, policy_from_config
from tierswitch.errors import ConfigError
from tierswitch.tiers.base import Capabilities, CostModel, Tier
from tierswitch.tiers.callable import CallableTier
from tierswitch.tiers.openai_factory import openai_tier
from tierswitch.validation import check_bounds, describe, number, only_keys, positive, rebased, section

if TYPE_CHECKING:
    from tierswitch.router import Router

__all__ = ["router_from_config", "tier_settings"]

_TIER_KEYS = {"cost", "modalities", "max_length", "version", "batched"}


def tier_settings(config: Any, field: str) -> dict[str, Any]:
    """Validate one tier's section: cost (a number per call, or {per_call, per_unit}), modalities, max_length."""
    config = section(config, field)
    only_keys(config, field, _TIER_KEYS)
    cost = config.get("cost", 0.0)
    if isinstance(cost, Mapping):
        only_keys(cost, f"{field}.cost", {"per_call", "per_unit"})
        model = CostModel(number(cost, "per_call", f"{field}.cost", 0.0, 0.0),
                          number(cost, "per_unit", f"{field}.cost", 0.0, 0.0))
    else:
        model = CostModel(number(config, "cost", field, 0.0, 0.0))
    modalities = config.get("modalities")
    if modalities is not None and (not isinstance(modalities, list) or not all(isinstance(m, str) for m in modalities)):
        raise ConfigError(f"{field}.modalities", f"must be a list of modality names, got {describe(modalities)}")
    max_length = config.get("max_length")
    if max_length is not None:
        positive(f"{field}.max_length", max_length, integer=True)
    try:
        capabilities = Capabilities.of(modalities, max_length)
    except ConfigError as exc:
        raise rebased(exc, "capabilities", field) from exc
    version = config.get("version", "1")
    if isinstance(version, bool) or not isinstance(version, (str, int)) or not str(version) or ":" in str(version):
        raise ConfigError(f"{field}.version", f"must be a non-empty string or integer without ':', got "
                                              f"{describe(version)}")
    batched = config.get("batched", False)
    if not isinstance(batched, bool):
        raise ConfigError(f"{field}.batched", f"must be true or false, got {describe(batched)}")
    return {"cost": model, "capabilities": capabilities, "version": str(version), "batched": batched}


def _is_openai(config: Any) -> bool:
    return isinstance(config, Mapping) and config.get("kind") == "openai"


Change = tuple[Tier, str, Any]  # (tier given in code, attribute, value from the config)


def _tiers(
    config: Mapping[str, Any], tiers: Sequence[Tier] | Mapping[str, Callable[..., Any] | Tier]
) -> tuple[list[Tier], list[Change]]:
    """The router's tiers, and the config's changes to the ``Tier`` objects given in code. The changes are returned,
    not made: the caller makes them once the whole config is valid, so a rejected config leaves those tiers (which
    a serving router may share) as they were."""
    declared = section(config.get("tiers", {}), "tiers")
    if isinstance(tiers, Mapping):
        order = list(declared) if declared else list(tiers)
        missing = [n for n in order if n not in tiers and not _is_openai(declared.get(n))]
        if missing:
            raise ConfigError(f"tiers.{missing[0]}", f"is declared but no tier or function was given for it; "
                                                      f"given: {sorted(tiers)}")
        extra = [n for n in tiers if n not in order]
        if extra:
            raise ConfigError("tiers", f"{extra} given in code but not declared; declare them cheapest first")
        built: list[Tier] = []
        for name in order:
            if _is_openai(declared.get(name)):  # kind: openai (tierswitch.tiers.openai_config)
                built.append(openai_tier(name, declared[name], f"tiers.{name}", tiers.get(name)))
                continue
            target = tiers[name]
            if isinstance(target, Tier):
                built.append(target)
                continue
            settings = tier_settings(declared.get(name, {}), f"tiers.{name}")
            batched = settings.pop("batched")
            built.append(CallableTier(name, target, batched=batched, **settings))
        tier_list = built
    else:
        tier_list = list(tiers)
    by_name = {t.name: t for t in tier_list}
    changes: list[Change] = []
    for name, settings_config in declared.items():
        if _is_openai(settings_config) and isinstance(tiers, Mapping):
            continue  # built from its own section above
        if name not in by_name:
            raise ConfigError(f"tiers.{name}", f"unknown tier; the tiers given are {sorted(by_name)}")
        settings = tier_settings(settings_config, f"tiers.{name}")
        if "cost" in settings_config:
            changes.append((by_name[name], "cost_model", settings["cost"]))
        if "modalities" in settings_config or "max_length" in settings_config:
            changes.append((by_name[name], "capabilities", settings["capabilities"]))
    return tier_list, changes


def router_from_config(
    config: str | Path | Mapping[str, Any],
    tiers: Sequence[Tier] | Mapping[str, Callable[..., Any] | Tier],
    **overrides: Any,
) -> Router:
    """A router from ``config`` (a path or a dict) over ``tiers``; keyword ``overrides`` go to ``Router``."""
    from tierswitch.router import Router

    # a dict is bounded like a file (values, depth) before any validator looks at it
    data = load_config(config) if isinstance(config, (str, Path)) else check_bounds(section(config, "config"), "config")
    only_keys(data, "config", {"tiers", "policy", "estimator", "cache", "router", "reliability"})
    if "policy" not in data:
        raise ConfigError("policy", "is required, e.g. {kind: cascade, thresholds: {base: 0.8}}")
    kwargs: dict[str, Any] = {"policy": policy_from_config(data["policy"])}
    if "estimator" in data:
        kwargs["estimator"] = estimator_from_config(data["estimator"])
    if "cache" in data:
        kwargs["cache"] = cache_from_config(data["cache"])
    router_options = section(data.get("router", {}), "router")
    only_keys(router_options, "router", {"fallback", "max_input_bytes", "max_batch"})
    kwargs.update(router_options)
    kwargs.update(overrides)
    tier_list, changes = _tiers(data, tiers)
    if "reliability" in data:  # timeouts, retries and breakers per tier (tierswitch.reliability)
        from tierswitch.reliability.config import guard_tiers_from_config

        tier_list = guard_tiers_from_config(tier_list, data["reliability"])
    router = Router(tier_list, **kwargs)
    # Only now that every section is valid. Guarded tiers and the router read cost and capabilities when they serve,
    # so setting them after building both is the same as before.
    for tier, attribute, value in changes:
        setattr(tier, attribute, value)
    return router
