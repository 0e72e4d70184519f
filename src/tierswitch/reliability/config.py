"""The ``reliability`` section of a router config: timeouts, retries and breakers per tier.

::

    reliability:
      default: {timeout_s: 2.0, retries: 2, backoff: {base_s: 0.05, max_s: 1.0}}
      full: {timeout_s: 10.0, breaker: {failures: 5, window_s: 30, cooldown_s: 10}}

``default`` applies to every tier; a tier's own entry overrides it key by key. Every error names the field at fault.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from tierswitch.errors import ConfigError
from tierswitch.reliability.breaker import CircuitBreaker
from tierswitch.reliability.guarded import Guarded
from tierswitch.reliability.retry import Backoff
from tierswitch.tiers.base import Tier
from tierswitch.validation import describe

__all__ = ["GUARD_KEYS", "guard_settings", "guard_tiers_from_config"]

GUARD_KEYS = {"timeout_s", "retries", "retry_timeouts", "workers", "max_queue", "backoff", "breaker"}
_BACKOFF_KEYS = {"base_s", "factor", "max_s", "jitter"}
_BREAKER_KEYS = {"failures", "window_s", "cooldown_s", "half_open_probes"}


def _mapping(value: Any, field: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(field, f"must be a mapping, got {type(value).__name__} {describe(value)}")
    return value


def _only(config: Mapping[str, Any], field: str, allowed: set[str]) -> None:
    unknown = sorted(set(map(str, config)) - allowed)
    if unknown:
        raise ConfigError(f"{field}.{unknown[0]}", f"unknown key; allowed: {sorted(allowed)}")


def _number(config: Mapping[str, Any], key: str, field: str, *, integer: bool = False, low: float = 0.0,
            strict: bool = True) -> Any:
    value = config[key]
    kinds = (int,) if integer else (int, float)
    bad = isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value)
    if bad or value < low or (strict and value == low):
        what = "an integer" if integer else "a number"
        bound = f"> {low:g}" if strict else f">= {low:g}"
        raise ConfigError(f"{field}.{key}", f"must be {what} {bound}, got {describe(value)}")
    return value


def guard_settings(config: Any, field: str, *, clock: Callable[[], float] | None = None) -> dict[str, Any]:
    """Validate one tier's reliability settings and return ``Guarded`` keyword arguments."""
    config = _mapping(config, field)
    _only(config, field, GUARD_KEYS)
    out: dict[str, Any] = {}
    if "timeout_s" in config and config["timeout_s"] is not None:
        out["timeout_s"] = float(_number(config, "timeout_s", field))
    if "retries" in config:
        out["retries"] = _number(config, "retries", field, integer=True, strict=False)
    if "workers" in config:
        out["workers"] = _number(config, "workers", field, integer=True, low=1, strict=False)
    if "max_queue" in config:
        out["max_queue"] = _number(config, "max_queue", field, integer=True, strict=False)
    if "retry_timeouts" in config:
        if not isinstance(config["retry_timeouts"], bool):
            raise ConfigError(f"{field}.retry_timeouts", f"must be true or false, got "
                                                         f"{describe(config['retry_timeouts'])}")
        out["retry_timeouts"] = config["retry_timeouts"]
    if "backoff" in config:
        backoff = _mapping(config["backoff"], f"{field}.backoff")
        _only(backoff, f"{field}.backoff", _BACKOFF_KEYS)
        kwargs = {k: _number(backoff, k, f"{field}.backoff", strict=False) for k in _BACKOFF_KEYS - {"jitter"}
                  if k in backoff}
        if "jitter" in backoff and not isinstance(backoff["jitter"], bool):
            raise ConfigError(f"{field}.backoff.jitter", f"must be true or false, got {describe(backoff['jitter'])}")
        try:
            out["backoff"] = Backoff(**kwargs, jitter=backoff.get("jitter", True))
        except ConfigError as exc:
            raise ConfigError(f"{field}.{exc.field}", str(exc).split(": ", 1)[-1]) from exc
    if "breaker" in config and config["breaker"] is not None:
        breaker = _mapping(config["breaker"], f"{field}.breaker")
        _only(breaker, f"{field}.breaker", _BREAKER_KEYS)
        kwargs = {}
        for key in _BREAKER_KEYS:
            if key in breaker:
                integer = key in ("failures", "half_open_probes")
                kwargs[key] = _number(breaker, key, f"{field}.breaker", integer=integer)
        if clock is not None:
            kwargs["clock"] = clock
        out["breaker"] = CircuitBreaker(**kwargs)
    return out


def guard_tiers_from_config(tiers: Sequence[Tier], config: Any, field: str = "reliability",
                            **injected: Any) -> list[Tier]:
    """Wrap ``tiers`` in ``Guarded`` per the ``reliability`` section (tiers it does not cover stay as they are).

    ``injected`` (clock, sleep, rng, ...) goes to every ``Guarded`` (the clock also to the breakers).
    """
    config = _mapping(config, field)
    names = [t.name for t in tiers]
    for key in config:
        if key != "default" and key not in names:
            raise ConfigError(f"{field}.{key}", f"unknown tier; the router has {names} (or use 'default')")
    default = config.get("default", {})
    guard_settings(default, f"{field}.default")  # validate even when every tier overrides it
    out: list[Tier] = []
    for tier in tiers:
        own = config.get(tier.name)
        if own is None and "default" not in config:
            out.append(tier)
            continue
        merged = {**_mapping(default, f"{field}.default"), **_mapping(own or {}, f"{field}.{tier.name}")}
        where = f"{field}.{tier.name}" if own is not None else f"{field}.default"
        settings = guard_settings(merged, where, clock=injected.get("clock"))
        out.append(Guarded(tier, **settings, **injected))
    return out
