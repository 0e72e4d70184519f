"""The student's architecture as plain data, so any process can rebuild it without pickle.

``StudentSpec`` describes a small MLP (input_dim -> hidden... -> n_classes, ReLU between layers), its class labels
and, optionally, its featuriser (``tierswitch.distill.features``: hashed word + char n-grams for text, the text
default of ``StudentSpec.for_text``); it is saved as JSON next to the weights. ``student_tier`` turns a spec (plus,
without a featuriser in the spec, the user's ``student_input(payload) -> np.ndarray``) into a serving tier whose hot
path is a numpy forward pass of the promoted weights (``tierswitch.distill.forward``), not per-op torch calls.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from tierswitch.distill.features import DenseFeatures, SparseRow, densify
from tierswitch.distill.forward import NumpyMLP
from tierswitch.distill.spec import StudentSpec
from tierswitch.errors import ConfigError, TierFailure, TierswitchError
from tierswitch.tiers.base import Capabilities, CostModel, RawOutput, make_prediction
from tierswitch.tiers.torch import TorchTier
from tierswitch.types import Prediction

__all__ = ["StudentInput", "StudentSpec", "StudentTier", "batch_inputs", "build_student", "student_tier"]

StudentInput = Callable[[Any], np.ndarray]
"""The student's own preprocessing: one payload -> a float vector of length ``spec.input_dim``."""


def build_student(spec: StudentSpec, seed: int = 0) -> nn.Sequential:
    """A freshly initialised MLP for ``spec`` (seeded, independent of torch's global RNG)."""
    gen = torch.Generator().manual_seed(seed)
    layers: list[nn.Module] = []
    dims = spec.dims
    for i in range(len(dims) - 1):
        linear = nn.Linear(dims[i], dims[i + 1])
        bound = 1.0 / dims[i] ** 0.5  # torch's default uniform init, drawn from our own generator
        with torch.no_grad():
            linear.weight.uniform_(-bound, bound, generator=gen)
            linear.bias.uniform_(-bound, bound, generator=gen)
        layers.append(linear)
        if i < len(dims) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def batch_inputs(student_input: StudentInput, batch: Sequence[Any], input_dim: int) -> np.ndarray:
    """Stack ``student_input`` of every payload into a float32 (batch, input_dim) array, checking the width."""
    rows = [np.asarray(student_input(x), dtype=np.float32).reshape(-1) for x in batch]
    for row in rows:
        if row.shape != (input_dim,):
            raise ValueError(f"student_input returned {row.shape[0]} features; the student expects {input_dim}")
    return np.stack(rows) if rows else np.zeros((0, input_dim), dtype=np.float32)


class StudentTier(TorchTier):
    """A ``TorchTier`` serving an MLP student described by ``spec`` (which pruning may change on a swap).

    Features come from ``student_input`` (the caller's, dense) or, without one, from ``spec.features`` (sparse).
    A float student is served by a ``NumpyMLP`` exported at each swap (no torch on the hot path); a quantized one
    by its torch module."""

    cost_set: bool = True  # False until a caller that left the cost out sets it (see ``student_tier``)

    def __init__(self, spec: StudentSpec, module: nn.Module, student_input: StudentInput | None = None,
                 **kwargs: Any) -> None:
        if student_input is None and spec.features is None:
            raise ConfigError("student.features", "the spec has no featuriser: give student_input(payload) -> "
                                                  "features, or a spec with features (StudentSpec.for_text)")
        dim = spec.input_dim
        feats = spec.features
        featurize: Any  # payload -> a dense vector (student_input, dense spec) or a sparse row
        if student_input is not None:
            featurize = student_input
        elif isinstance(feats, DenseFeatures):
            featurize = feats.dense_one
        else:
            featurize = feats.sparse_one  # type: ignore[union-attr]  # spec without features: refused above
        self.featurize = featurize
        self.sparse = student_input is None and not isinstance(feats, DenseFeatures)

        def preprocess(batch: Sequence[Any]) -> np.ndarray:
            if self.sparse:
                return densify([featurize(x) for x in batch], dim)
            return batch_inputs(featurize, batch, dim)  # a dense featuriser

        super().__init__(kwargs.pop("name", "distilled"), module, preprocess=preprocess, classes=spec.classes,
                         **kwargs)
        self.spec = spec
        self.student_input = student_input
        self._numpy: tuple[nn.Module, NumpyMLP | None] = (self.module, NumpyMLP.from_module(self.module))

    def features(self, x: Any) -> np.ndarray | SparseRow:
        """The student's input for one payload: a sparse row (spec featuriser) or a dense vector."""
        if self.sparse:
            return self.featurize(x)  # type: ignore[no-any-return]
        return np.asarray(self.featurize(x), dtype=np.float32).reshape(-1)

    def swap_module(self, new: nn.Module | Mapping[str, torch.Tensor], version: str) -> None:
        super().swap_module(new, version)
        module = self.module
        self._numpy = (module, NumpyMLP.from_module(module))  # a reader checks the pair's module is the served one

    def _predict_raw(self, batch: Sequence[Any]) -> Sequence[RawOutput]:
        active = getattr(self._local, "active", None) or self._active
        module, forward = self._numpy
        if forward is None or module is not active[0]:
            return super()._predict_raw(batch)  # quantized (or mid-swap): the torch module
        self._local.active = None
        if self.sparse:
            logits = forward.logits_sparse([self.featurize(x) for x in batch])
        else:
            logits = forward.logits(batch_inputs(self.featurize, batch, self.spec.input_dim))
        probs = NumpyMLP.softmax(logits)
        top = probs.argmax(axis=1)
        classes = self.classes
        return [RawOutput(classes[int(i)] if classes is not None else int(i), row) for i, row in zip(top, probs)]

    def predict_one(self, x: Any, length: int = 0) -> Prediction:
        """One request without building a batch: featurise, numpy forward, softmax (the router's hot path)."""
        active = self._active
        module, forward = self._numpy
        if forward is None or module is not active[0]:
            return super().predict_one(x, length)
        started = time.perf_counter()
        try:
            row = self.featurize(x)
            if self.sparse:
                logits = forward.logits_sparse([row])[0]
            else:
                logits = forward.logits(np.asarray(row, dtype=np.float32).reshape(1, -1))[0]
            z = np.exp(logits - logits.max(), dtype=np.float64)
            probs = z / z.sum()
        except TierswitchError:
            raise
        except Exception as exc:  # a featuriser or shape error names this tier
            raise TierFailure(self.name, f"{type(exc).__name__}: {exc}") from exc
        elapsed = time.perf_counter() - started
        top = int(probs.argmax())
        classes = self.classes
        raw = RawOutput(classes[top] if classes is not None else top, probs)
        return make_prediction(raw, self.name, active[1], self.cost_model.cost(length), elapsed)

    def swap_student(self, module: nn.Module, spec: StudentSpec, version: str) -> None:
        """Serve ``module`` (built for ``spec``, possibly quantized) as ``version``, atomically."""
        if (spec.input_dim, spec.n_classes, spec.classes) != (self.spec.input_dim, self.spec.n_classes,
                                                               self.spec.classes):
            raise ConfigError("student", "a new student must keep the input width, class count and class labels")
        self.swap_module(module, version)
        self.spec = spec


def student_tier(
    spec: StudentSpec,
    student_input: StudentInput | None = None,
    *,
    name: str = "distilled",
    module: nn.Module | None = None,
    seed: int = 0,
    cost: CostModel | float | None = None,
    capabilities: Capabilities | None = None,
    version: str = "0",
    num_threads: int | None = 1,
) -> StudentTier:
    """A tier serving a student of ``spec`` (freshly initialised from ``seed`` unless ``module`` is given).

    ``cost`` is the student's price per call in the router's cost unit. Leaving it out is allowed only where the
    caller sets it afterwards (``distill_into`` measures it against the teacher); it then reads 0.0 until set,
    and ``StudentTier.cost_set`` is False."""
    tier = StudentTier(
        spec,
        module if module is not None else build_student(spec, seed),
        student_input,
        name=name,
        cost=0.0 if cost is None else cost,
        capabilities=capabilities,
        version=version,
        num_threads=num_threads,
    )
    tier.cost_set = cost is not None
    return tier
