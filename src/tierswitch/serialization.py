"""msgpack with numpy arrays, and nothing that can execute code on load.

Arrays travel as an extension type holding (dtype string, shape, raw bytes), never as lists and never pickled.
Object dtypes are refused. Both cache values and distillation samples use this codec.
"""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np

from tierswitch.errors import UnsupportedInput

__all__ = ["ARRAY_EXT", "array_from_parts", "array_parts", "pack", "unpack"]

ARRAY_EXT = 1
_ALLOWED_KINDS = "biufc"  # bool, signed, unsigned, float, complex: fixed-size, no Python objects


def array_parts(arr: np.ndarray) -> tuple[str, list[int], bytes]:
    """(dtype string, shape, raw bytes) of a numeric array: how arrays travel, here and in cache envelopes."""
    if arr.dtype.kind not in _ALLOWED_KINDS:
        raise UnsupportedInput(f"cannot serialise an array of dtype {arr.dtype}; use a numeric dtype")
    return arr.dtype.str, list(arr.shape), np.ascontiguousarray(arr).tobytes()


_DTYPES: dict[str, np.dtype] = {}  # dtype string -> allowed dtype; only a few dozen numeric strings exist


def array_from_parts(dtype: str, shape: list[int], raw: bytes) -> np.ndarray:
    """The read-only array ``array_parts`` described. Raises ``ValueError`` (or TypeError) on a refused dtype,
    a shape that does not match the bytes, or parts of the wrong type."""
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


def _default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return msgpack.ExtType(ARRAY_EXT, msgpack.packb(array_parts(obj)))
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise UnsupportedInput(f"cannot serialise {type(obj).__name__}; use str, numbers, lists, dicts or arrays")


def _ext_hook(code: int, data: bytes) -> Any:
    if code != ARRAY_EXT:
        raise ValueError(f"unknown msgpack extension type {code}")
    dtype, shape, raw = msgpack.unpackb(data)
    return array_from_parts(dtype, shape, raw)


def pack(obj: Any) -> bytes:
    """Encode ``obj`` (plain data and numpy arrays) to msgpack bytes."""
    data: bytes = msgpack.packb(obj, default=_default, use_bin_type=True)
    return data


def unpack(data: bytes) -> Any:
    """Decode msgpack bytes from ``pack``. Raises ``ValueError`` (or msgpack's errors) on corrupt input."""
    return msgpack.unpackb(data, ext_hook=_ext_hook, raw=False, strict_map_key=False)
