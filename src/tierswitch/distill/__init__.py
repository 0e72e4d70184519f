"""Online distillation: full-tier answers train the distilled student while it serves.

Importing this package imports neither torch nor redis; the torch-backed names (``Distiller``, ``StudentSpec``,
``WeightStore`` ...) load their module on first access.
"""

from __future__ import annotations

import importlib
from typing import Any

from tierswitch.distill.buffer import Buffer, MemoryBuffer, PriorityBuffer, Reservoir, Taken
from tierswitch.distill.config import DistillConfig
from tierswitch.distill.features import DenseFeatures, HashedTextFeatures
from tierswitch.distill.feed import DistillFeeder
from tierswitch.distill.gate import GateConfig, GateResult, PromotionEvent
from tierswitch.distill.redis_buffer import RedisStreamBuffer
from tierswitch.distill.sample import Sample, decode_sample, encode_sample
from tierswitch.distill.spec import StudentSpec

_LAZY = {
    "Distiller": "tierswitch.distill.trainer",
    "distill_loss": "tierswitch.distill.loss",
    "distill_into": "tierswitch.distill.attach",
    "Distillation": "tierswitch.distill.attach",
    "ProcessTrainer": "tierswitch.distill.process",
    "StudentTier": "tierswitch.distill.student",
    "build_student": "tierswitch.distill.student",
    "student_tier": "tierswitch.distill.student",
    "WeightStore": "tierswitch.distill.weights",
    "LoadedWeights": "tierswitch.distill.weights",
    "WeightSubscriber": "tierswitch.distill.reload",
    "compress": "tierswitch.distill.compress",
    "quantize_int8": "tierswitch.distill.compress",
    "prune_hidden": "tierswitch.distill.compress",
}

__all__ = [
    "Buffer",
    "DenseFeatures",
    "DistillConfig",
    "DistillFeeder",
    "GateConfig",
    "GateResult",
    "HashedTextFeatures",
    "MemoryBuffer",
    "PriorityBuffer",
    "PromotionEvent",
    "RedisStreamBuffer",
    "Reservoir",
    "Sample",
    "StudentSpec",
    "Taken",
    "decode_sample",
    "encode_sample",
    *sorted(_LAZY),
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tierswitch.distill' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
