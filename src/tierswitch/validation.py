"""Field-naming validators for configs and constructors (the ground floor: they import only ``errors``).

Every check raises a ``ConfigError`` naming the dotted field at fault and what is allowed, so a user editing a YAML
file or a constructor call learns which value to change.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from tierswitch.errors import ConfigError

__all__ = ["finite", "number", "only_keys", "positive", "rebased", "section"]


def section(config: Any, field: str) -> Mapping[str, Any]:
    if not isinstance(config, Mapping):
        raise ConfigError(field, f"must be a mapping, got {type(config).__name__}")
    return config


def only_keys(config: Mapping[str, Any], field: str, allowed: set[str]) -> None:
    unknown = set(config) - allowed
    if unknown:
        raise ConfigError(f"{field}.{sorted(unknown)[0]}", f"unknown key; allowed: {sorted(allowed)}")


def number(config: Mapping[str, Any], key: str, field: str, default: Any = ..., low: float | None = None,
           high: float | None = None) -> float:
    """``config[key]`` checked by ``finite`` (``default`` when the key is absent; without one it is required)."""
    if key not in config:
        if default is ...:
            raise ConfigError(f"{field}.{key}", "is required")
        return default
    return finite(f"{field}.{key}", config[key], low=-math.inf if low is None else low,
                  high=math.inf if high is None else high)


def finite(field: str, value: Any, *, low: float = -math.inf, high: float = math.inf, strict: bool = False) -> float:
    """``value`` as a float when it is a finite real number (not a bool) within [low, high] ((low, high] when
    ``strict``); otherwise a ``ConfigError`` naming ``field`` and the range."""
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
            or value < low or value > high or (strict and value == low)):
        raise ConfigError(field, f"must be a finite number{_range(low, high, strict)}, got {value!r}")
    return float(value)


def _range(low: float, high: float, strict: bool) -> str:
    if high == math.inf:
        return "" if low == -math.inf else f" {'>' if strict else '>='} {low:g}"
    if low == -math.inf:
        return f" <= {high:g}"
    return f" in {'(' if strict else '['}{low:g}, {high:g}]"


def positive(field: str, value: Any, *, integer: bool = False) -> None:
    """Refuse anything but a number > 0: an int when ``integer``, never a bool or NaN (inf passes)."""
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)) or not value > 0:
        raise ConfigError(field, f"must be {'a positive integer' if integer else 'a positive number'}, got {value!r}")


def rebased(exc: ConfigError, root: str, field: str) -> ConfigError:
    """``exc`` with the leading ``root`` of its field replaced by ``field``, same message: constructors name their
    arguments from the default root (``policy.share_b``); a factory building one at ``policy.b`` raises
    ``rebased(exc, "policy", field) from exc`` so that the error names ``policy.b.share_b``."""
    return ConfigError(field + exc.field.removeprefix(root), str(exc).split(": ", 1)[-1])
