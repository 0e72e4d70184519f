"""Canonical digests of inputs: stable across processes and machines, so a fleet shares cache keys.

blake2b (128-bit) over a type-tagged encoding: strings as UTF-8, arrays as dtype + shape + raw bytes, mappings with
their keys sorted, sequences in order. A conversation is hashed whole (every turn, role and content), never just its
last turn, so two conversations that end alike do not share an answer.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping
from hashlib import blake2b
from operator import itemgetter
from typing import Any

import numpy as np

from tierswitch.errors import InputTooLarge, NonFiniteInput, UnsupportedInput

__all__ = ["digest_of"]

_MAX_DEPTH = 32


def _utf8(x: str) -> bytes:
    try:
        return x.encode("utf-8")
    except UnicodeEncodeError as exc:  # lone surrogates: text decoded from invalid bytes with surrogateescape
        raise UnsupportedInput(
            f"text is not valid Unicode (lone surrogate at index {exc.start}), as when non-UTF-8 bytes are decoded "
            "with errors='surrogateescape'; decode the bytes with errors='replace' or the right encoding"
        ) from None


class _Bounded:
    """A hasher that refuses to take more than ``left`` bytes, so a huge structured input fails fast."""

    __slots__ = ("h", "left", "limit")

    def __init__(self, h: Any, limit: int) -> None:
        self.h = h
        self.left = limit
        self.limit = limit

    def update(self, data: Any) -> None:
        self.left -= data.nbytes if isinstance(data, memoryview) else len(data)
        if self.left < 0:
            raise InputTooLarge(
                f"input is over the router's max of {self.limit} bytes; split it, or raise max_input_bytes"
            )
        self.h.update(data)


def _encode(x: Any, h: Any, depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise UnsupportedInput(f"input nests deeper than {_MAX_DEPTH} levels; flatten it")
    if isinstance(x, str):
        data = _utf8(x)
        h.update(b"s" + struct.pack("<Q", len(data)) + data)
    elif isinstance(x, bool) or x is None:
        h.update(b"b" + repr(x).encode())
    elif isinstance(x, int):
        if x.bit_length() <= 1024:
            h.update(b"i" + str(x).encode() + b";")
        else:  # str() of a > 4300-digit int raises (Python's int-to-str limit); its bytes do not, and are bounded
            data = x.to_bytes((x.bit_length() + 8) // 8, "little", signed=True)
            h.update(b"I" + struct.pack("<Q", len(data)) + data)
    elif isinstance(x, float):
        if not math.isfinite(x):
            raise NonFiniteInput(f"input holds {x}; replace NaN/inf before routing")
        h.update(b"f" + struct.pack("<d", x))
    elif isinstance(x, np.ndarray):
        if isinstance(x, np.ma.MaskedArray):  # the mask is not in the bytes: two inputs would share one key
            raise UnsupportedInput(
                "masked arrays cannot be routed (the mask would not be part of the cache key, and NaN under the "
                "mask would pass); pass a.filled(value), or the data and the mask as two arrays"
            )
        if isinstance(h, _Bounded) and x.nbytes > h.left:  # before any copy: a broadcast view can be GBs
            raise InputTooLarge(
                f"input array is {x.nbytes} bytes (shape {_shape(x)}), over the router's max of {h.limit} bytes; "
                "split it, or raise max_input_bytes"
            )
        if x.dtype.kind not in "biufc":
            raise UnsupportedInput(f"arrays of dtype {x.dtype} cannot be routed; use a numeric dtype")
        try:
            if x.dtype.kind in "fc" and not np.isfinite(x).all():
                raise NonFiniteInput("input array holds NaN or inf; clean it before routing")
            h.update(b"a" + x.dtype.str.encode() + repr(x.shape).encode())
            h.update(np.ascontiguousarray(x).data)
        except MemoryError:  # no max_input_bytes and an array (or a broadcast view) larger than memory
            raise InputTooLarge(f"input array of {x.nbytes} bytes does not fit in memory; split it") from None
    elif isinstance(x, Mapping):
        for key in x:
            if not isinstance(key, str):
                raise UnsupportedInput(f"dict keys must be strings, got {type(key).__name__}")
        items = sorted(x.items(), key=itemgetter(0))
        h.update(b"m" + struct.pack("<Q", len(items)))
        for key, value in items:
            _encode(key, h, depth + 1)
            _encode(value, h, depth + 1)
    elif isinstance(x, (list, tuple)):
        h.update(b"l" + struct.pack("<Q", len(x)))
        for item in x:
            _encode(item, h, depth + 1)
    elif isinstance(x, bytes):
        h.update(b"y" + struct.pack("<Q", len(x)) + x)
    elif isinstance(x, np.generic):
        _encode(x.item(), h, depth)
    else:
        raise UnsupportedInput(
            f"cannot build a cache key for a {type(x).__name__}; pass str, numbers, lists, dicts or numpy arrays"
        )


def _shape(x: np.ndarray) -> str:
    shape = "x".join(map(str, x.shape[:8]))
    return shape + ("x..." if x.ndim > 8 else "")


def digest_of(x: Any, max_bytes: int | None = None) -> str:
    """The hex digest identifying ``x`` (32 hex characters). Text takes a fast path.

    Every str, subclasses included (``numpy.str_`` from a string array), takes that path: a str subclass hashed
    by ``_encode`` instead ("s" + length + bytes) would both miss the plain string's entry and collide with the
    plain string whose text starts with those 8 length bytes.
    """
    if isinstance(x, str):
        data = _utf8(x)
        if max_bytes is not None and len(data) > max_bytes:
            raise InputTooLarge(f"text input is {len(data)} bytes, over the router's max of {max_bytes}")
        return blake2b(b"s" + data, digest_size=16).hexdigest()
    h = blake2b(digest_size=16)
    _encode(x, h if max_bytes is None else _Bounded(h, max_bytes), 0)
    return h.hexdigest()
