"""Field-naming validators for configs and constructors (the ground floor: they import only ``errors``).

Every check raises a ``ConfigError`` naming the dotted field at fault and what is allowed, so a user editing a YAML
file or a constructor call learns which value to change.
"""

from __future__ import annotations

import math
import reprlib
from collections.abc import Mapping
from itertools import islice
from typing import Any

from tierswitch.errors import ConfigError, EmptyInput, InputTooLarge, UnsupportedInput

__all__ = ["MAX_CONFIG_DEPTH", "MAX_CONFIG_NODES", "batch_inputs", "check_bounds", "describe", "finite", "number",
           "only_keys",
           "positive", "rebased", "section"]

#: A config (file or dict) may hold at most this many values (aliases expanded: a shared subtree counts every time
#: it is reachable) and nest at most this deep. Real router configs hold a few hundred values.
MAX_CONFIG_NODES = 100_000
MAX_CONFIG_DEPTH = 64
#: ``describe`` never returns more characters than this.
DESCRIBE_LIMIT = 120


class _Short(reprlib.Repr):
    """A repr that looks at a bounded part of its value: a few items per container, a few levels, short strings,
    and huge ints by their size (``repr`` of a 5000-digit int raises under Python's int-to-str limit)."""

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel = 3
        self.maxtuple = self.maxlist = self.maxarray = self.maxdict = self.maxset = self.maxfrozenset = 6
        self.maxdeque = 6
        self.maxstring = 60
        self.maxlong = 40
        self.maxother = 60

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 128:
            return f"<int of {x.bit_length()} bits>"
        return super().repr_int(x, level)

    def repr_instance(self, x: Any, level: int) -> str:
        try:
            return super().repr_instance(x, level)
        except Exception:  # a __repr__ that raises must not turn a ConfigError into something else
            return f"<{type(x).__name__} object>"


_SHORT = _Short()


def describe(value: Any, limit: int = DESCRIBE_LIMIT) -> str:
    """A repr of ``value`` for an error message, bounded in length and in the work it does (at most a few items of
    a few levels are looked at), so a huge or hostile value never costs more than a short message. Every validator
    message shows values through this."""
    try:
        text = _SHORT.repr(value)
    except Exception:  # repr of an object that refuses it (a broken __repr__, a huge int inside a subclass ...)
        text = f"<{type(value).__name__} object>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_bounds(data: Any, field: str, *, max_nodes: int = MAX_CONFIG_NODES,
                 max_depth: int = MAX_CONFIG_DEPTH) -> Any:
    """``data`` when it holds at most ``max_nodes`` values nested at most ``max_depth`` deep; a ``ConfigError``
    naming ``field`` otherwise. Run before any validator looks at a config: a 400-byte YAML file of nested aliases
    ("billion laughs") expands to 10**9 values, and a self-referencing alias never ends.

    Values are counted as every validator would see them (a shared subtree, as YAML aliases build, counts each time
    it is reachable), but each distinct container is walked once and its size remembered, so the check costs the
    size of the parsed data, not of its expansion."""
    seen: dict[int, tuple[int, int]] = {}  # id of a container -> (values in it, levels below it)
    open_: set[int] = set()
    deep = ConfigError(field, f"nests deeper than {max_depth} levels; flatten it")

    def walk(value: Any, depth: int) -> tuple[int, int]:
        if depth > max_depth:
            raise deep
        if isinstance(value, Mapping):
            children: Any = [x for item in value.items() for x in item]
        elif isinstance(value, (list, tuple)):
            children = value
        else:
            return 1, 0
        key = id(value)
        known = seen.get(key)
        if known is not None:
            if depth + known[1] > max_depth:
                raise deep
            return known
        if key in open_:
            raise ConfigError(field, "refers to itself (a YAML alias inside its own anchor); write it out")
        open_.add(key)
        total, height = 1, 0
        for child in children:
            n, h = walk(child, depth + 1)
            total += n
            height = max(height, h + 1)
            if total > max_nodes:
                raise ConfigError(field, f"holds more than {max_nodes} values (YAML aliases count every time they "
                                         "are used); a router config needs a few hundred: remove repeated aliases")
        open_.discard(key)
        seen[key] = (total, height)
        return total, height

    walk(data, 0)
    return data


def section(config: Any, field: str) -> Mapping[str, Any]:
    if not isinstance(config, Mapping):
        raise ConfigError(field, f"must be a mapping, got {type(config).__name__}")
    return config


def only_keys(config: Mapping[str, Any], field: str, allowed: set[str]) -> None:
    unknown = set(config) - allowed
    if unknown:  # keys may be of mixed types (YAML ``1: x`` beside ``a: y``): sort them by their text
        key = sorted(unknown, key=str)[0]
        raise ConfigError(f"{field}.{describe(key, 60) if not isinstance(key, str) else key}",
                          f"unknown key; allowed: {sorted(allowed)}")


def number(config: Mapping[str, Any], key: str, field: str, default: Any = ..., low: float | None = None,
           high: float | None = None) -> float:
    """``config[key]`` checked by ``finite`` (``default`` when the key is absent; without one it is required)."""
    if key not in config:
        if default is ...:
            raise ConfigError(f"{field}.{key}", "is required")
        return default  # type: ignore[no-any-return]
    return finite(f"{field}.{key}", config[key], low=-math.inf if low is None else low,
                  high=math.inf if high is None else high)


def finite(field: str, value: Any, *, low: float = -math.inf, high: float = math.inf, strict: bool = False) -> float:
    """``value`` as a float when it is a finite real number (not a bool) within [low, high] ((low, high] when
    ``strict``); otherwise a ``ConfigError`` naming ``field`` and the range."""
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or (isinstance(value, int) and value.bit_length() > 1000)  # math.isfinite(10**400): OverflowError
            or not math.isfinite(value) or value < low or value > high or (strict and value == low)):
        raise ConfigError(field, f"must be a finite number{_range(low, high, strict)}, got {describe(value)}")
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
        raise ConfigError(field, f"must be {'a positive integer' if integer else 'a positive number'}, got "
                                 f"{describe(value)}")


def rebased(exc: ConfigError, root: str, field: str) -> ConfigError:
    """``exc`` with the leading ``root`` of its field replaced by ``field``, same message: constructors name their
    arguments from the default root (``policy.share_b``); a factory building one at ``policy.b`` raises
    ``rebased(exc, "policy", field) from exc`` so that the error names ``policy.b.share_b``."""
    return ConfigError(field + exc.field.removeprefix(root), str(exc).split(": ", 1)[-1])


def batch_inputs(xs: Any, max_batch: int) -> list[Any]:
    """The inputs of ``router.batch(xs)`` as a list of at most ``max_batch`` items, or a named ``InvalidInput``:
    ``EmptyInput`` for None, ``UnsupportedInput`` for a bare string or bytes (it would route each character), a
    mapping (it would route its keys), a set (no order to answer in) or a non-iterable (an int), and
    ``InputTooLarge`` over ``max_batch``. Any other iterable is taken, a generator too: it is read up to
    ``max_batch + 1`` items, never further."""
    positive("router.max_batch", max_batch, integer=True)
    if xs is None:
        raise EmptyInput("batch is None; pass a list of inputs, e.g. router.batch([x1, x2])")
    if isinstance(xs, (str, bytes, bytearray)):
        raise UnsupportedInput(f"batch is a bare {type(xs).__name__}, which would route each character on its own; "
                               "pass [text] for one input, or call router(text)")
    if isinstance(xs, Mapping):
        raise UnsupportedInput("batch is a mapping, which would route its keys; pass a list of inputs ([payload] "
                               "for one dict input, or call router(payload))")
    if isinstance(xs, (set, frozenset)):
        raise UnsupportedInput("batch is a set, whose order is arbitrary (answers come back in input order); "
                               "pass a list")
    try:
        size = len(xs)
    except TypeError:  # no len: a generator or another iterator (or not iterable at all)
        size = None
    if size is not None and size > max_batch:
        raise InputTooLarge(f"batch of {size} inputs is over max_batch={max_batch}; split it")
    try:
        iterator = iter(xs)
    except TypeError:
        raise UnsupportedInput(f"batch must be a list (or another iterable) of inputs, got {describe(xs)} "
                               f"({type(xs).__name__})") from None
    try:
        items = list(islice(iterator, max_batch + 1))
    except Exception as exc:  # a generator that raises: the caller's code, named as such
        raise UnsupportedInput(f"reading the batch raised {type(exc).__name__}: {describe(str(exc))}") from exc
    if len(items) > max_batch:
        raise InputTooLarge(f"batch has more than max_batch={max_batch} inputs; split it")
    return items
