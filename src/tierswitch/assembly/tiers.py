"""Tiers built from a config's ``tiers`` section, for programs that get no tiers in code (``tierswitch serve``).

Each tier names its kind::

    tiers:
      base: {kind: python, function: "my_models:small", cost: {per_call: 1.0}}
      full: {kind: python, function: "my_models:big", batched: false, stream: "my_models:big_stream"}
      gpt:  {kind: openai, base_url: "http://127.0.0.1:8000/v1", model: gpt-4o, ...}   # OpenAITier.from_config

``python`` tiers import ``module:function`` (sync or ``async def``; ``batched`` as for ``CallableTier``); an optional
``stream`` function (an async generator of text deltas) makes the tier a streaming one. ``openai`` tiers are built by
``tierswitch.tiers.openai.OpenAITier.from_config``. ``split_tiers`` returns the built tiers plus the config with its
tier sections emptied, ready for ``router_from_config`` (the tiers were configured here).
"""

from __future__ import annotations

import importlib
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from tierswitch.assembly.from_config import tier_settings
from tierswitch.errors import ConfigError, TierFailure
from tierswitch.tiers.base import Tier
from tierswitch.tiers.callable import CallableTier
from tierswitch.types import Prediction
from tierswitch.validation import only_keys, section

__all__ = ["PythonTier", "import_function", "split_tiers", "tiers_from_config"]

_CORE_KEYS = {"cost", "modalities", "max_length", "version", "batched"}


def import_function(spec: Any, field: str) -> Callable[..., Any]:
    """``"package.module:function"`` (dotted attributes allowed after the colon) imported and checked callable."""
    if not isinstance(spec, str) or spec.count(":") != 1 or not all(spec.split(":")):
        raise ConfigError(field, f"must be 'package.module:function', got {spec!r}")
    module_name, _, attr = spec.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(field, f"cannot import module {module_name!r}: {exc}; check the name and PYTHONPATH") from exc
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError as exc:
            raise ConfigError(field, f"module {module_name!r} has no attribute {attr!r}") from exc
    if not callable(target):
        raise ConfigError(field, f"{spec!r} is a {type(target).__name__}, not a function")
    return target  # type: ignore[no-any-return]


class PythonTier(CallableTier):
    """A ``CallableTier`` that may also stream: ``stream_fn(x)`` is an async generator of text deltas."""

    def __init__(self, name: str, fn: Callable[[Any], Any], *, stream_fn: Callable[[Any], Any] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(name, fn, **kwargs)
        self.stream_fn = stream_fn
        self.streams = stream_fn is not None

    async def astream(self, x: Any, length: int = 0) -> AsyncIterator[str | Prediction]:
        """Text deltas from ``stream_fn``, then one ``Prediction`` of the whole text (priced like ``predict``)."""
        if self.stream_fn is None:
            raise TierFailure(self.name, "this tier does not stream; configure a `stream` function")
        version = self.version
        started = time.perf_counter()
        parts: list[str] = []
        try:
            async for delta in self.stream_fn(x):
                text = str(delta)
                parts.append(text)
                yield text
        except TierFailure:
            raise
        except Exception as exc:
            raise TierFailure(self.name, f"{type(exc).__name__}: {exc}") from exc
        yield Prediction("".join(parts), self.name, version, self.cost_model.cost(length),
                         time.perf_counter() - started)


def _python_tier(name: str, config: Mapping[str, Any], field: str) -> Tier:
    only_keys(config, field, _CORE_KEYS | {"kind", "function", "stream"})
    fn = import_function(config.get("function"), f"{field}.function")
    stream_fn = import_function(config["stream"], f"{field}.stream") if "stream" in config else None
    settings = tier_settings({k: v for k, v in config.items() if k in _CORE_KEYS}, field)
    return PythonTier(name, fn, stream_fn=stream_fn, batched=settings["batched"], cost=settings["cost"],
                      capabilities=settings["capabilities"], version=settings["version"])


def _openai_tier(name: str, config: Mapping[str, Any], field: str) -> Tier:
    try:
        from tierswitch.tiers.openai_factory import openai_tier
    except ImportError as exc:
        raise ConfigError(f"{field}.kind", f"kind 'openai' needs tierswitch.tiers.openai, not importable: {exc}") \
            from exc
    tier: Tier = openai_tier(name, config, field)
    return tier


_KINDS: dict[str, Callable[[str, Mapping[str, Any], str], Tier]] = {"python": _python_tier, "openai": _openai_tier}


def tiers_from_config(config: Mapping[str, Any], field: str = "tiers") -> dict[str, Tier]:
    """Every tier of a ``tiers`` section, in order (cheapest first), built by its ``kind``."""
    declared = section(config, field)
    if not declared:
        raise ConfigError(field, "declare at least one tier, e.g. {base: {kind: python, function: 'pkg.mod:fn'}}")
    built: dict[str, Tier] = {}
    for name, tier_config in declared.items():
        tier_field = f"{field}.{name}"
        tier_config = section(tier_config, tier_field)
        kind = tier_config.get("kind")
        factory = _KINDS.get(kind) if isinstance(kind, str) else None
        if factory is None:
            raise ConfigError(f"{tier_field}.kind", f"must be one of {sorted(_KINDS)}, got {kind!r}")
        built[str(name)] = factory(str(name), tier_config, tier_field)
    return built


def split_tiers(config: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Tier]]:
    """(the config with every tier section emptied, the tiers it declares), for ``router_from_config``."""
    tiers = tiers_from_config(config.get("tiers", {}))
    rest = dict(config)
    rest["tiers"] = {name: {} for name in tiers}
    return rest, tiers
