"""Private copies of cached outputs, so a cached answer is never a shared mutable object.

The memory cache keeps Python objects (a hit costs no decoding), so it must not keep the caller's: a caller that
mutates ``Routed.output`` (a list, a dict) or a model that reuses its output buffer would change what later hits
return. ``freeze`` makes the cache's own copy when a value is stored and estimates its size in bytes; ``thaw``
hands each hit a fresh copy of the mutable parts. Immutable values (str, numbers, bytes, None, numpy scalars) are
shared as they are, so the usual classifier answer (a label) costs nothing; numeric arrays are copied once into
read-only arrays over immutable bytes (``np.frombuffer``), which no caller can make writable again, and are then
shared. Other objects are deep-copied (``copy.deepcopy``) both ways.

The size estimate is ``sys.getsizeof`` of each node, with arrays counted by ``nbytes``; it is what
``MemoryCache(max_bytes=...)`` budgets.
"""

from __future__ import annotations

import copy
import sys
from typing import Any

import numpy as np

from tierswitch.errors import UnsupportedInput

__all__ = ["MAX_DEPTH", "freeze", "thaw"]

MAX_DEPTH = 64
"""Nesting deeper than this is not cached (msgpack's own decoder stops at a similar depth)."""

_SHARED = frozenset({str, int, float, bool, type(None), bytes, complex})
_ARRAY_OVERHEAD = sys.getsizeof(np.empty(0))


class _FlatList(list):  # type: ignore[type-arg]
    """A frozen list whose items are all shared as they are: thawed by one C-level copy (``list(x)``)."""

    __slots__ = ()


class _FlatDict(dict):  # type: ignore[type-arg]
    """A frozen dict whose keys and values are all shared as they are: thawed by ``dict(x)``."""

    __slots__ = ()


def freeze(value: Any) -> tuple[Any, int, bool]:
    """(the cache's private copy of ``value``, its size estimate in bytes, whether hits must ``thaw`` it).

    Raises ``UnsupportedInput`` when the value nests deeper than ``MAX_DEPTH`` or cannot be copied."""
    size = [0]
    frozen, mutable = _freeze(value, 0, size)
    return frozen, size[0], mutable


def _freeze(value: Any, depth: int, size: list[int]) -> tuple[Any, bool]:
    """(frozen copy, whether a hit must copy it). Lists and dicts of shared items become ``_FlatList`` /
    ``_FlatDict``, so the common ``[floats]`` or ``{"label": str, "scores": [floats]}`` thaw at C speed."""
    kind = type(value)
    if kind in _SHARED:
        size[0] += sys.getsizeof(value)
        return value, False
    if depth >= MAX_DEPTH:
        raise UnsupportedInput(f"output nests deeper than {MAX_DEPTH} levels; not cached")
    if kind is list or kind is tuple:
        size[0] += sys.getsizeof(value)
        items = [_freeze(v, depth + 1, size) for v in value]
        deep = any(m for _, m in items)
        if kind is tuple:
            return tuple(v for v, _ in items), deep
        return ([v for v, _ in items] if deep else _FlatList(v for v, _ in items)), True
    if kind is dict:
        size[0] += sys.getsizeof(value)
        pairs = [(_freeze(k, depth + 1, size), _freeze(v, depth + 1, size)) for k, v in value.items()]
        if any(km or vm for (_, km), (_, vm) in pairs):
            return {k: v for (k, _), (v, _) in pairs}, True
        return _FlatDict((k, v) for (k, _), (v, _) in pairs), True
    if kind is np.ndarray and value.dtype.kind in "biufcmM":
        size[0] += _ARRAY_OVERHEAD + value.nbytes
        return frozen_array(value), False
    if isinstance(value, np.generic) and value.dtype.kind in "biufcmM":
        size[0] += sys.getsizeof(value)
        return value, False
    # sets, custom objects, object arrays, array subclasses: deep copies both ways
    try:
        private = copy.deepcopy(value)
    except Exception as exc:  # an object that refuses to be copied is not cached (never shared)
        raise UnsupportedInput(f"cannot copy a {kind.__name__} output ({exc}); not cached") from exc
    size[0] += sys.getsizeof(value)
    return private, True


def frozen_array(arr: np.ndarray) -> np.ndarray:
    """A read-only copy of a numeric array over immutable bytes (``setflags(write=True)`` is refused on it)."""
    out = np.frombuffer(np.ascontiguousarray(arr).tobytes(), dtype=arr.dtype)
    return out.reshape(arr.shape)


def thaw(value: Any) -> Any:
    """A copy of a frozen value that shares nothing mutable with it (frozen arrays and immutables are shared)."""
    kind = type(value)
    if kind is _FlatList:
        return list(value)
    if kind is _FlatDict:
        return dict(value)
    if kind in _SHARED or kind is np.ndarray and not value.flags.writeable:
        return value
    if kind is list:
        return [thaw(v) for v in value]
    if kind is dict:
        return {k: thaw(v) for k, v in value.items()}
    if kind is tuple:
        return tuple(thaw(v) for v in value)
    if isinstance(value, np.generic):
        return value
    return copy.deepcopy(value)
