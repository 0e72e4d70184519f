"""The student's architecture as plain data, so any process can rebuild it without pickle.

``StudentSpec`` describes a small MLP (input_dim -> hidden... -> n_classes, ReLU between layers), its class labels
and, optionally, its featuriser (``tierswitch.distill.features``: hashed word + char n-grams for text, the text
default of ``StudentSpec.for_text``); it is saved as JSON next to the weights. ``student_tier`` turns a spec (plus,
without a featuriser in the spec, the user's ``student_input(payload) -> np.ndarray``) into a serving tier whose hot
path is a numpy forward pass of the promoted weights (``tierswitch.distill.forward``), not per-op torch calls.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from tierswitch.distill.features import Featurizer, HashedTextFeatures, SparseRow, densify, features_from_dict
from tierswitch.distill.forward import NumpyMLP
from tierswitch.errors import ConfigError
from tierswitch.tiers.base import Capabilities, CostModel, RawOutput
from tierswitch.tiers.torch import TorchTier
from tierswitch.validation import positive

__all__ = ["StudentInput", "StudentSpec", "StudentTier", "batch_inputs", "build_student", "student_tier"]

StudentInput = Callable[[Any], np.ndarray]
"""The student's own preprocessing: one payload -> a float vector of length ``spec.input_dim``."""


@dataclass(frozen=True)
class StudentSpec:
    """An MLP: ``input_dim`` -> each of ``hidden`` (ReLU) -> ``n_classes`` logits; ``classes`` are the labels the
    argmax maps to (the teacher's output values, in the order of its probability columns; numpy scalars are turned
    into plain ints/strings); ``features`` the featuriser (a ``Featurizer`` or its dict) whose width is
    ``input_dim``, or None when the caller supplies ``student_input``."""

    input_dim: int
    hidden: tuple[int, ...]
    n_classes: int
    classes: tuple[Any, ...] | None = None
    features: Featurizer | None = None

    def __post_init__(self) -> None:
        if isinstance(self.hidden, (int, np.integer)) and not isinstance(self.hidden, bool):
            object.__setattr__(self, "hidden", (int(self.hidden),))
        elif isinstance(self.hidden, (str, bytes)) or not isinstance(self.hidden, Sequence):
            raise ConfigError("student.hidden", f"must be a list of layer widths, got {self.hidden!r}")
        object.__setattr__(self, "hidden", tuple(int(h) if isinstance(h, np.integer) else h for h in self.hidden))
        if self.classes is not None:
            if isinstance(self.classes, (str, bytes)) or not hasattr(self.classes, "__iter__"):
                raise ConfigError("student.classes", f"must be a list of labels, got {self.classes!r}")
            object.__setattr__(self, "classes", tuple(_plain(c) for c in self.classes))
        if isinstance(self.features, dict):
            object.__setattr__(self, "features", features_from_dict(self.features))
        elif self.features is not None and not hasattr(self.features, "sparse_one"):
            raise ConfigError("student.features", f"must be a featuriser or its dict, got {self.features!r:.100}")
        for name, value in (("input_dim", self.input_dim), ("n_classes", self.n_classes)):
            if isinstance(value, np.integer):
                object.__setattr__(self, name, int(value))
            positive(f"student.{name}", getattr(self, name), integer=True)
        if self.features is not None and self.features.dim != self.input_dim:
            raise ConfigError("student.input_dim", f"is {self.input_dim} but the featuriser gives "
                                                   f"{self.features.dim} columns")
        if self.n_classes < 2:
            raise ConfigError("student.n_classes", "must be >= 2")
        for i, h in enumerate(self.hidden):
            positive(f"student.hidden[{i}]", h, integer=True)
        if self.classes is not None:
            if len(self.classes) != self.n_classes:
                raise ConfigError("student.classes", f"has {len(self.classes)} labels for {self.n_classes} classes")
            if not all(isinstance(c, (str, int)) and not isinstance(c, bool) for c in self.classes):
                raise ConfigError("student.classes", "labels must be strings or integers")

    @classmethod
    def for_text(cls, classes: Sequence[Any], hidden: Sequence[int] | int = (256,),
                 features: Featurizer | dict[str, Any] | None = None) -> StudentSpec:
        """A text student over ``classes``: hashed word 1-2-grams + char 2-4-grams (``HashedTextFeatures()``)."""
        feats = features_from_dict(features) if isinstance(features, dict) else features or HashedTextFeatures()
        labels = list(classes)
        return cls(feats.dim, hidden, len(labels), tuple(labels), feats)  # type: ignore[arg-type]

    @property
    def dims(self) -> list[int]:
        return [self.input_dim, *self.hidden, self.n_classes]

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Tensor name -> shape of the module ``build_student`` makes."""
        out: dict[str, tuple[int, ...]] = {}
        dims = self.dims
        for i in range(len(dims) - 1):
            out[f"{2 * i}.weight"] = (dims[i + 1], dims[i])
            out[f"{2 * i}.bias"] = (dims[i + 1],)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "mlp",
            "input_dim": self.input_dim,
            "hidden": list(self.hidden),
            "n_classes": self.n_classes,
            "classes": None if self.classes is None else list(self.classes),
            "features": None if self.features is None else self.features.to_dict(),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: Any) -> StudentSpec:
        if not isinstance(d, dict) or d.get("kind", "mlp") != "mlp":
            raise ConfigError("student", f"expected a dict with kind 'mlp', got {d!r:.200}")
        unknown = sorted(set(d) - {"kind", "input_dim", "hidden", "n_classes", "classes", "features"})
        if unknown:
            raise ConfigError(f"student.{unknown[0]}", "unknown setting; known: input_dim, hidden, n_classes, "
                                                       "classes, features")
        for name in ("input_dim", "hidden", "n_classes"):
            if name not in d:
                raise ConfigError(f"student.{name}", "is missing")
        return cls(d["input_dim"], d["hidden"], d["n_classes"], d.get("classes"), d.get("features"))

    @classmethod
    def from_json(cls, text: str | bytes) -> StudentSpec:
        try:
            d = json.loads(text)
        except ValueError as exc:
            raise ConfigError("student", f"not valid JSON: {exc}") from exc
        return cls.from_dict(d)


def _plain(label: Any) -> Any:
    """A label as plain data: numpy integers/strings become int/str (JSON and msgpack take them)."""
    if isinstance(label, np.generic):
        return label.item()
    return label


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
        featurize: Callable[[Any], Any] = student_input if student_input is not None else spec.features.sparse_one  # type: ignore[union-attr]
        self.featurize = featurize
        self.sparse = student_input is None

        def preprocess(batch: Sequence[Any]) -> np.ndarray:
            if self.sparse:
                return densify([featurize(x) for x in batch], dim)
            return batch_inputs(featurize, batch, dim)

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
