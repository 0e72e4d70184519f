"""Configs are plain, validated data: YAML (safe loading) or TOML files, or dicts.

A router config has up to six sections::

    tiers:                         # cost and capabilities of the tiers given in code, by name, cheapest first
      base: {cost: {per_call: 1.0}, modalities: [text], max_length: 512}
      full: {cost: {per_call: 20.0}}
    policy: {kind: cascade, thresholds: {base: 0.8}}
    estimator: {kind: complexity, probe: base}
    cache: {kind: memory, max_entries: 10000, ttl_s: 600}     # or {kind: redis, url_env: REDIS_URL}, or none
    router: {fallback: true, max_input_bytes: 8000000, max_batch: 10000}
    reliability: {default: {timeout_s: 2.0}}   # timeouts, retries, breakers per tier (tierswitch.reliability)

Policies and estimators are built from a ``kind`` registry that other modules extend with ``register_policy`` and
``register_estimator``. Every error is a ``ConfigError`` naming the dotted field at fault and what is allowed.
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Callable, Mapping
from itertools import accumulate
from pathlib import Path
from typing import Any

from tierswitch.errors import ConfigError
from tierswitch.validation import MAX_CONFIG_DEPTH, check_bounds, describe, number, only_keys, rebased, section

__all__ = [
    "cache_from_config",
    "estimator_from_config",
    "load_config",
    "policy_from_config",
    "register_estimator",
    "register_policy",
]

#: A config file larger than this is refused before it is parsed (router configs are a few KB).
MAX_CONFIG_BYTES = 1_000_000
#: A YAML file may use at most this many aliases (``*name``); with ``check_bounds`` on the expanded result this
#: keeps "billion laughs" files (nested aliases) to milliseconds.
MAX_YAML_ALIASES = 100

_NOT_BRACKETS = re.compile(r"[^\[\]{}]+")

Factory = Callable[[Mapping[str, Any], str], Any]
_POLICIES: dict[str, Factory | str] = {}
_ESTIMATORS: dict[str, Factory | str] = {}


def register_policy(kind: str, factory: Factory | str) -> None:
    """Make ``{"kind": kind, ...}`` build a policy: ``factory(config, field_path)``, or a "module:function" string
    imported on first use (so optional policies cost nothing until configured)."""
    _POLICIES[kind] = factory


def register_estimator(kind: str, factory: Factory | str) -> None:
    """Like ``register_policy``, for estimators."""
    _ESTIMATORS[kind] = factory


def load_config(path: str | Path, content: bytes | None = None) -> dict[str, Any]:
    """Read a YAML or JSON (``.yaml``/``.yml``/``.json``, safe loader) or TOML (``.toml``) file into a dict.
    ``content``: the file's bytes, when the caller has already read them (the file is then not read again)."""
    path = Path(path)
    data = parse_file(path, str(path), content)
    if not isinstance(data, dict):
        raise ConfigError(str(path), f"the top level must be a mapping, got {type(data).__name__}")
    return data


def parse_file(path: Path, field: str, content: bytes | None = None) -> Any:
    """The data of a YAML or JSON (``.yaml``/``.yml``/``.json``, safe loader) or TOML (``.toml``, Python >= 3.11)
    file (or of its ``content`` already read); a ``ConfigError`` naming ``field`` when it cannot be read, is not
    UTF-8, cannot be parsed, or is over the bounds: ``MAX_CONFIG_BYTES``, ``MAX_YAML_ALIASES`` and
    ``validation.check_bounds`` (values, aliases expanded, and nesting depth), all checked before any validator
    looks at the data."""
    try:
        if content is None:
            size = path.stat().st_size
            if size > MAX_CONFIG_BYTES:
                raise ConfigError(field, f"{path} is {size} bytes, over the {MAX_CONFIG_BYTES}-byte bound for "
                                         "config files")
            content = path.read_bytes()
        if len(content) > MAX_CONFIG_BYTES:
            raise ConfigError(field, f"{path} is {len(content)} bytes, over the {MAX_CONFIG_BYTES}-byte bound for "
                                     "config files")
        text = content.decode("utf-8")
    except OSError as exc:
        raise ConfigError(field, f"cannot read {path}: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(field, f"{path} is not UTF-8 text ({exc}); save it as UTF-8") from exc
    # PyYAML's scanner is quadratic in the nesting of flow collections ("[[[[..." costs seconds before the composer
    # sees the first level) and tomllib recurses per level, so bracket depth is bounded on the text first. Brackets
    # inside quoted strings count too: the bound (twice the depth allowed) leaves room for them.
    brackets = _NOT_BRACKETS.sub("", text)
    if brackets and max(accumulate(1 if c in "[{" else -1 for c in brackets)) > 2 * MAX_CONFIG_DEPTH:
        raise ConfigError(field, f"nests deeper than {MAX_CONFIG_DEPTH} levels ([ and {{ brackets); flatten it")
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            try:
                import tomllib
            except ModuleNotFoundError as exc:  # Python 3.10
                raise ConfigError(field, "TOML needs Python >= 3.11; write the file as YAML") from exc
            data: Any = tomllib.loads(text)
        elif suffix in (".yaml", ".yml", ".json"):
            data = _safe_yaml(text, field)
        else:
            raise ConfigError(field, f"unknown file format {describe(suffix)}; use .yaml, .yml, .json or .toml")
    except ConfigError:
        raise
    except RecursionError as exc:  # the parser's own recursion on deeply nested flow collections
        raise ConfigError(field, f"cannot parse {path}: it nests too deeply; flatten it") from exc
    except Exception as exc:  # yaml/toml parse errors
        raise ConfigError(field, f"cannot parse {path}: {str(exc)[:400]}") from exc
    return check_bounds(data, field)


def _safe_yaml(text: str, field: str) -> Any:
    """``yaml.safe_load(text)`` refusing more than ``MAX_YAML_ALIASES`` aliases (counted as the composer meets
    them, before anything is built from them)."""
    import yaml

    class Loader(yaml.SafeLoader):
        aliases = 0
        depth = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                self.aliases += 1
                if self.aliases > MAX_YAML_ALIASES:
                    raise ConfigError(field, f"uses more than {MAX_YAML_ALIASES} YAML aliases (*name); a router "
                                             "config needs a few: write the values out")
            self.depth += 1  # the composer recurses per level: stop long before Python's recursion limit
            if self.depth > MAX_CONFIG_DEPTH:
                raise ConfigError(field, f"nests deeper than {MAX_CONFIG_DEPTH} levels; flatten it")
            try:
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

    loader = Loader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _resolve(registry: dict[str, Factory | str], kind: str, field: str) -> Factory:
    factory = registry.get(kind)
    if factory is None:
        raise ConfigError(f"{field}.kind", f"unknown kind {describe(kind)}; allowed: {sorted(registry)}")
    if isinstance(factory, str):
        module, _, name = factory.partition(":")
        factory = getattr(importlib.import_module(module), name)
        registry[kind] = factory
    return factory


def _kind(config: Any, field: str) -> tuple[Mapping[str, Any], str]:
    config = section(config, field)
    kind = config.get("kind")
    if not isinstance(kind, str):
        raise ConfigError(f"{field}.kind", f"is required and must be a string, got {describe(kind)}")
    return config, kind


def policy_from_config(config: Any, field: str = "policy") -> Any:
    """Build a policy tree from ``{"kind": ..., ...}``."""
    config, kind = _kind(config, field)
    return _resolve(_POLICIES, kind, field)(config, field)


def estimator_from_config(config: Any, field: str = "estimator") -> Any:
    """Build an estimator from ``{"kind": ..., ...}``."""
    config, kind = _kind(config, field)
    return _resolve(_ESTIMATORS, kind, field)(config, field)


def cache_from_config(config: Any, field: str = "cache") -> Any:
    """``{"kind": "memory"|"redis"|"none", ...}``; None for no cache."""
    config, kind = _kind(config, field)
    options = {k: v for k, v in config.items() if k != "kind"}
    if kind == "none":
        return None
    if kind == "memory":
        from tierswitch.cache.memory import MemoryCache

        only_keys(options, field, {"max_entries", "max_bytes", "ttl_s"})
        return MemoryCache(**options)
    if kind == "redis":
        from tierswitch.cache.redis import RedisCache

        url = options.pop("url", None)
        url_env = options.pop("url_env", None)
        if url_env is not None:  # credentials stay out of config files: the URL comes from the environment
            if url is not None:
                raise ConfigError(f"{field}.url_env", "give either url or url_env, not both")
            if not isinstance(url_env, str) or not os.environ.get(url_env):
                raise ConfigError(f"{field}.url_env", f"names an environment variable that is not set: "
                                                      f"{describe(url_env)}")
            url = os.environ[url_env]
        if not isinstance(url, str):
            raise ConfigError(f"{field}.url", "is required for a redis cache, e.g. redis://127.0.0.1:6379/0 "
                                              "(or url_env: NAME_OF_AN_ENVIRONMENT_VARIABLE)")
        try:
            return RedisCache(url, **options)
        except TypeError as exc:
            raise ConfigError(field, f"bad option for the redis cache: {exc}") from exc
    raise ConfigError(f"{field}.kind", f"unknown cache kind {describe(kind)}; allowed: ['memory', 'none', 'redis']")


# -- built-in kinds -----------------------------------------------------------------------------------------
def _fixed(config: Mapping[str, Any], field: str) -> Any:
    from tierswitch.policies.fixed import Fixed

    only_keys(config, field, {"kind", "tier"})
    tier = config.get("tier")
    if not isinstance(tier, str):
        raise ConfigError(f"{field}.tier", f"must name a tier, got {describe(tier)}")
    return Fixed(tier)


def _threshold(config: Mapping[str, Any], field: str) -> Any:
    from tierswitch.policies.threshold import Threshold

    only_keys(config, field, {"kind", "tiers", "cuts"})
    tiers, cuts = config.get("tiers"), config.get("cuts")
    if not isinstance(tiers, list) or not all(isinstance(t, str) for t in tiers):
        raise ConfigError(f"{field}.tiers", f"must be a list of tier names, got {describe(tiers)}")
    if not isinstance(cuts, list) or not all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in cuts):
        raise ConfigError(f"{field}.cuts", f"must be a list of numbers, got {describe(cuts)}")
    try:
        return Threshold(tiers, cuts)
    except ConfigError as exc:
        raise rebased(exc, "policy", field) from exc


def _cascade(config: Mapping[str, Any], field: str) -> Any:
    from tierswitch.policies.cascade import Cascade

    only_keys(config, field, {"kind", "thresholds", "start", "trust", "target_agreement"})
    thresholds = section(config.get("thresholds", {}), f"{field}.thresholds")
    for tier in thresholds:
        number(thresholds, tier, f"{field}.thresholds", low=0.0, high=1.0)
    start = config.get("start")
    if start is not None and not isinstance(start, str):
        raise ConfigError(f"{field}.start", f"must name a tier, got {describe(start)}")
    return Cascade(
        {k: float(v) for k, v in thresholds.items()},
        start=start,
        trust=number(config, "trust", field, 0.0, 0.0, 1.0),
        target_agreement=number(config, "target_agreement", field, 0.9, 0.0, 1.0),
    )


def _first_of(config: Mapping[str, Any], field: str) -> Any:
    from tierswitch.policies.base import FirstOf

    only_keys(config, field, {"kind", "policies"})
    children = config.get("policies")
    if not isinstance(children, list) or not children:
        raise ConfigError(f"{field}.policies", "must be a non-empty list of policies")
    return FirstOf(tuple(policy_from_config(c, f"{field}.policies[{i}]") for i, c in enumerate(children)))


def _complexity(config: Mapping[str, Any], field: str) -> Any:
    from tierswitch.estimator.complexity import ComplexityEstimator

    options = {k: v for k, v in config.items() if k != "kind"}
    only_keys(options, field, {"length_weight", "length_scale", "modality_weight", "modality_prior",
                               "uncertainty_weight", "probe", "uncertainty"})
    try:
        return ComplexityEstimator(**options)
    except ConfigError as exc:
        raise rebased(exc, "estimator", field) from exc


def _ab(config: Mapping[str, Any], field: str) -> Any:
    from tierswitch.policies.ab import from_config

    return from_config(config, field, build_policy=policy_from_config)  # arms built here: ab never imports us


def _learned(config: Mapping[str, Any], field: str) -> Any:
    from tierswitch.policies.learned import from_config

    return from_config(config, field, build_estimator=estimator_from_config)


register_policy("fixed", _fixed)
register_policy("threshold", _threshold)
register_policy("cascade", _cascade)
register_policy("first_of", _first_of)
register_policy("budget", "tierswitch.policies.budget:from_config")
register_policy("learned", _learned)
register_policy("bandit", "tierswitch.policies.bandit:from_config")
register_policy("ab", _ab)
register_policy("verified_cascade", "tierswitch.policies.verified_cascade:from_config")
register_estimator("complexity", _complexity)
register_estimator("learned", "tierswitch.estimator.learned:from_config")
