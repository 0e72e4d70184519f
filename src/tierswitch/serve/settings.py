"""The ``gateway:`` section of a ``tierswitch serve`` config, validated with field-named ``ConfigError``s::

    gateway:
      auth: {keys_env: TIERSWITCH_API_KEYS}     # env var: comma-separated sha256 hex digests, optionally name=digest
      limits:
        max_body_bytes: 1000000                 # 413 over it
        timeout_s: 60                           # 504 when a request takes longer
        rate: {requests: 600, per_s: 60}        # per API key, fixed windows (Redis when the cache is redis)
        budget: {cost: 100.0, per_s: 86400}     # per API key: routed cost per window, then 429
        keys: {team-a: {rate: {requests: 10, per_s: 1}}}   # per-key overrides, by key name
      routes:                                   # named policy variants, selected by the request's `model`
        router-strict: {policy: {kind: cascade, thresholds: {base: 0.95}}}
      reload_interval_s: 2.0                    # watch the config file (0: never)
      drain_timeout_s: 30                       # SIGTERM: finish in-flight requests for up to this long
      threads: 64                               # the event loop's executor, where the router's sync core runs
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tierswitch.errors import ConfigError
from tierswitch.validation import number, only_keys, positive, section

__all__ = ["AUTO", "GatewaySettings", "Limit", "hash_key", "parse_gateway"]

AUTO = "tierswitch/auto"
_HEX = re.compile(r"[0-9a-f]{64}")
_NAME = re.compile(r"[A-Za-z0-9_.\-]+")


def hash_key(key: str) -> str:
    """The sha256 hex digest under which an API key is configured (``tierswitch serve --hash-key KEY`` prints it)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class Limit:
    """At most ``amount`` (requests, or cost) per window of ``per_s`` seconds."""

    amount: float
    per_s: float


@dataclass(frozen=True, slots=True)
class KeyLimits:
    rate: Limit | None = None
    budget: Limit | None = None


@dataclass(frozen=True)
class GatewaySettings:
    keys: dict[str, str] = field(default_factory=dict)  # sha256 hex -> key name; empty: no auth
    auth: bool = False
    max_body_bytes: int = 1_000_000
    timeout_s: float = 60.0
    limits: KeyLimits = KeyLimits()
    key_limits: dict[str, KeyLimits] = field(default_factory=dict)
    routes: dict[str, Mapping[str, Any]] = field(default_factory=dict)  # variant name -> policy config
    reload_interval_s: float = 2.0
    drain_timeout_s: float = 30.0
    threads: int = 64

    def limits_for(self, key_name: str) -> KeyLimits:
        return self.key_limits.get(key_name, self.limits)


def _limit(config: Any, field: str, amount_key: str) -> Limit:
    config = section(config, field)
    only_keys(config, field, {amount_key, "per_s"})
    amount = number(config, amount_key, field, low=0.0)
    if amount_key == "requests":
        positive(f"{field}.requests", config["requests"], integer=True)
    per_s = number(config, "per_s", field, 60.0, 0.001)
    return Limit(amount, per_s)


def _key_limits(config: Any, field: str, base: KeyLimits) -> KeyLimits:
    config = section(config, field)
    only_keys(config, field, {"rate", "budget"})
    rate = _limit(config["rate"], f"{field}.rate", "requests") if "rate" in config else base.rate
    budget = _limit(config["budget"], f"{field}.budget", "cost") if "budget" in config else base.budget
    return KeyLimits(rate, budget)


def _keys(config: Any, field: str) -> dict[str, str]:
    config = section(config, field)
    only_keys(config, field, {"keys_env"})
    env = config.get("keys_env")
    if not isinstance(env, str) or not env:
        raise ConfigError(f"{field}.keys_env", f"must name an environment variable, got {env!r}")
    raw = os.environ.get(env, "")
    keys: dict[str, str] = {}
    for i, entry in enumerate(e.strip() for e in raw.split(",")):
        if not entry:
            continue
        name, _, digest = entry.rpartition("=")
        digest = digest.lower()
        if not _HEX.fullmatch(digest):
            raise ConfigError(f"{field}.keys_env", f"entry {i} of ${env} is not a sha256 hex digest (64 hex digits, "
                                                   "optionally name=digest); store hashes, never the keys")
        keys[digest] = name or digest[:12]
    if not keys:
        raise ConfigError(f"{field}.keys_env", f"${env} is unset or empty; set it to the sha256 digests of the keys")
    return keys


def parse_gateway(config: Any, tier_names: list[str], field: str = "gateway") -> GatewaySettings:
    """Validate the ``gateway`` section (None or absent: defaults, no auth)."""
    config = section({} if config is None else config, field)
    only_keys(config, field, {"auth", "limits", "routes", "reload_interval_s", "drain_timeout_s", "threads"})
    threads = config.get("threads", 64)
    positive(f"{field}.threads", threads, integer=True)
    keys = _keys(config["auth"], f"{field}.auth") if "auth" in config else {}
    limits_config = section(config.get("limits", {}), f"{field}.limits")
    only_keys(limits_config, f"{field}.limits", {"max_body_bytes", "timeout_s", "rate", "budget", "keys"})
    max_body = limits_config.get("max_body_bytes", 1_000_000)
    positive(f"{field}.limits.max_body_bytes", max_body, integer=True)
    timeout_s = number(limits_config, "timeout_s", f"{field}.limits", 60.0, 0.001)
    base = _key_limits({k: v for k, v in limits_config.items() if k in ("rate", "budget")}, f"{field}.limits",
                       KeyLimits())
    key_limits = {}
    for name, override in section(limits_config.get("keys", {}), f"{field}.limits.keys").items():
        if keys and name not in keys.values():
            raise ConfigError(f"{field}.limits.keys.{name}",
                              f"no API key has this name; names: {sorted(keys.values())}")
        key_limits[str(name)] = _key_limits(override, f"{field}.limits.keys.{name}", base)
    routes: dict[str, Mapping[str, Any]] = {}
    for name, route in section(config.get("routes", {}), f"{field}.routes").items():
        route_field = f"{field}.routes.{name}"
        if not isinstance(name, str) or not _NAME.fullmatch(name.replace("/", "")) or name == AUTO:
            raise ConfigError(route_field, "a route name is letters, digits, '_', '-', '.', '/' (not tierswitch/auto)")
        if name in tier_names:
            raise ConfigError(route_field, f"{name!r} is a tier name, which already pins that tier; rename the route")
        route = section(route, route_field)
        only_keys(route, route_field, {"policy"})
        if "policy" not in route:
            raise ConfigError(f"{route_field}.policy", "is required, e.g. {kind: cascade, thresholds: {base: 0.9}}")
        routes[name] = route["policy"]
    return GatewaySettings(
        keys=keys, auth=bool(keys), max_body_bytes=max_body, timeout_s=timeout_s, limits=base, key_limits=key_limits,
        routes=routes, reload_interval_s=number(config, "reload_interval_s", field, 2.0, 0.0),
        drain_timeout_s=number(config, "drain_timeout_s", field, 30.0, 0.0), threads=threads,
    )
