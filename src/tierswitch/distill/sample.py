"""One training example for the student: its input, the teacher's answer, and where it came from.

Samples travel as msgpack (``tierswitch.serialization``): arrays as raw bytes with dtype and shape, never pickled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tierswitch.errors import DistillError
from tierswitch.serialization import pack, unpack

__all__ = ["Sample", "decode_sample", "encode_sample", "is_finite", "teacher_logits"]

_SCHEMA = 1


@dataclass(frozen=True, slots=True)
class Sample:
    """A teacher-labelled example.

    ``x`` is the student's input (features after the student's own preprocessing); when None, ``raw`` holds the
    payload and the trainer applies ``student_input`` to it. ``teacher`` holds the teacher's class probabilities
    (``teacher_logits=False``) or logits (True); ``label`` is the teacher's hard label as a class index; ``truth``
    the ground-truth class index when known (the loss then prefers it). ``meta`` is free plain data
    (source, tier version, digest, time).
    """

    teacher: np.ndarray
    label: int
    x: np.ndarray | None = None
    raw: Any = None
    teacher_logits: bool = False
    truth: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.x is None and self.raw is None:
            raise DistillError("a Sample needs the student's input: give x (features) or raw (the payload)")
        teacher = np.asarray(self.teacher)
        if teacher.ndim != 1 or teacher.size < 2 or teacher.dtype.kind not in "fiu":
            raise DistillError(f"teacher must be a 1-D numeric vector over >= 2 classes, got shape {teacher.shape}")
        if not 0 <= int(self.label) < teacher.size:
            raise DistillError(f"label {self.label} is outside the teacher's {teacher.size} classes")
        if self.truth is not None and not 0 <= int(self.truth) < teacher.size:
            raise DistillError(f"truth {self.truth} is outside the teacher's {teacher.size} classes")


def encode_sample(sample: Sample) -> bytes:
    """msgpack bytes for ``sample``."""
    x = None if sample.x is None else np.asarray(sample.x, dtype=np.float32)
    return pack(
        {
            "v": _SCHEMA,
            "x": x,
            "raw": sample.raw,
            "t": np.asarray(sample.teacher, dtype=np.float32),
            "tl": sample.teacher_logits,
            "y": int(sample.label),
            "g": None if sample.truth is None else int(sample.truth),
            "m": sample.meta,
        }
    )


def decode_sample(data: bytes) -> Sample:
    """The ``Sample`` in ``data``; raises ``DistillError`` when the bytes are not a sample of a known schema."""
    try:
        d = unpack(data)
        if not isinstance(d, dict) or d.get("v") != _SCHEMA:
            raise DistillError(f"not a distillation sample of schema {_SCHEMA}")
        return Sample(
            teacher=d["t"],
            label=int(d["y"]),
            x=d["x"],
            raw=d["raw"],
            teacher_logits=bool(d["tl"]),
            truth=d["g"],
            meta=d["m"] or {},
        )
    except DistillError:
        raise
    except Exception as exc:  # corrupt bytes, missing fields, wrong types
        raise DistillError(f"corrupt distillation sample ({type(exc).__name__}: {exc})") from exc


def teacher_logits(samples: Sequence[Sample]) -> np.ndarray:
    """(batch, n_classes) teacher logits: probabilities become log p (one vectorised pass), logits stay."""
    t = np.stack([s.teacher for s in samples]).astype(np.float32, copy=False)
    is_probs = np.fromiter((not s.teacher_logits for s in samples), dtype=bool, count=len(samples))
    if is_probs.all():
        return np.log(np.maximum(t, 1e-8))
    t = t.copy()
    t[is_probs] = np.log(np.maximum(t[is_probs], 1e-8))
    return t


def is_finite(sample: Sample) -> bool:
    """True when the teacher's answer and the features (when present) hold no NaN/inf."""
    teacher_ok = bool(np.isfinite(sample.teacher).all())
    return teacher_ok and (sample.x is None or bool(np.isfinite(sample.x).all()))
