"""msgpack with numpy arrays, and nothing that can execute code on load.

Arrays travel as an extension type holding (dtype string, shape, raw bytes), never as lists and never pickled.
Object dtypes are refused. Both cache values and distillation samples use this codec.
"""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np

from tierswitch.errors import UnsupportedInput

__all__ = ["ARRAY_EXT", "pack", "unpack"]

ARRAY_EXT = 1
_ALLOWED_KINDS = "biufc"  # bool, signed, unsigned, float, complex: fixed-size, no Python objects


def _default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind not in _ALLOWED_KINDS:
            raise UnsupportedInput(f"cannot serialise an array of dtype {obj.dtype}; use a numeric dtype")
        body = msgpack.packb([obj.dtype.str, list(obj.shape), np.ascontiguousarray(obj).tobytes()])
        return msgpack.ExtType(ARRAY_EXT, body)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise UnsupportedInput(f"cannot serialise {type(obj).__name__}; use str, numbers, lists, dicts or arrays")


_DTYPES: dict[str, np.dtype] = {}  # dtype string -> allowed dtype; only a few dozen numeric strings exist


def _ext_hook(code: int, data: bytes) -> Any:
    if code != ARRAY_EXT:
        raise ValueError(f"unknown msgpack extension type {code}")
    dtype, shape, raw = msgpack.unpackb(data)
    dt = _DTYPES.get(dtype)
    if dt is None:
        dt = np.dtype(dtype)
        if dt.kind not in _ALLOWED_KINDS:
            raise ValueError(f"refusing array dtype {dt}")
        _DTYPES[dtype] = dt
    arr = np.frombuffer(raw, dtype=dt)  # over immutable bytes: read-only already
    if len(shape) != 1 or shape[0] != arr.size:
        arr = arr.reshape(shape)
    return arr


def pack(obj: Any) -> bytes:
    """Encode ``obj`` (plain data and numpy arrays) to msgpack bytes."""
    return msgpack.packb(obj, default=_default, use_bin_type=True)


def unpack(data: bytes) -> Any:
    """Decode msgpack bytes from ``pack``. Raises ``ValueError`` (or msgpack's errors) on corrupt input."""
    return msgpack.unpackb(data, ext_hook=_ext_hook, raw=False, strict_map_key=False)
