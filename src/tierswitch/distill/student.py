"""The student's architecture as plain data, so any process can rebuild it without pickle.

``StudentSpec`` describes a small MLP (input_dim -> hidden... -> n_classes, ReLU between layers) and its class labels;
it is saved as JSON next to the weights. ``student_tier`` turns a spec plus the user's ``student_input(payload) ->
np.ndarray`` (the student's own preprocessing) into a serving ``TorchTier``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from tierswitch.errors import ConfigError
from tierswitch.tiers.base import Capabilities, CostModel
from tierswitch.tiers.torch import TorchTier
from tierswitch.validation import describe, positive

__all__ = ["StudentInput", "StudentSpec", "StudentTier", "batch_inputs", "build_student", "student_tier"]

StudentInput = Callable[[Any], np.ndarray]
"""The student's own preprocessing: one payload -> a float vector of length ``spec.input_dim``."""


@dataclass(frozen=True)
class StudentSpec:
    """An MLP: ``input_dim`` -> each of ``hidden`` (ReLU) -> ``n_classes`` logits; ``classes`` are the labels the
    argmax maps to (the teacher's output values, in the order of its probability columns)."""

    input_dim: int
    hidden: tuple[int, ...]
    n_classes: int
    classes: tuple[Any, ...] | None = None

    def __post_init__(self) -> None:
        for name in ("hidden", "classes"):  # a bare int or string would raise a raw TypeError (or split a label)
            value = getattr(self, name)
            if value is None and name == "classes":
                continue
            if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
                example = "[32] for one hidden layer of 32" if name == "hidden" else '["neg", "pos"]'
                raise ConfigError(f"student.{name}", f"must be a list, e.g. {example}; got {describe(value)}")
            object.__setattr__(self, name, tuple(value))
        for name, value in (("input_dim", self.input_dim), ("n_classes", self.n_classes)):
            positive(f"student.{name}", value, integer=True)
        if self.n_classes < 2:
            raise ConfigError("student.n_classes", "must be >= 2")
        for i, h in enumerate(self.hidden):
            positive(f"student.hidden[{i}]", h, integer=True)
        if self.classes is not None:
            if len(self.classes) != self.n_classes:
                raise ConfigError("student.classes", f"has {len(self.classes)} labels for {self.n_classes} classes")
            if not all(isinstance(c, (str, int)) and not isinstance(c, bool) for c in self.classes):
                raise ConfigError("student.classes", "labels must be strings or integers")

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
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: Any) -> StudentSpec:
        if not isinstance(d, dict) or d.get("kind", "mlp") != "mlp":
            raise ConfigError("student", f"expected a dict with kind 'mlp', got {d!r:.200}")
        try:
            return cls(int(d["input_dim"]), tuple(d["hidden"]), int(d["n_classes"]), d.get("classes"))
        except KeyError as exc:
            raise ConfigError(f"student.{exc.args[0]}", "is missing") from exc
        except TypeError as exc:
            raise ConfigError("student", f"malformed spec: {exc}") from exc

    @classmethod
    def from_json(cls, text: str | bytes) -> StudentSpec:
        try:
            d = json.loads(text)
        except ValueError as exc:
            raise ConfigError("student", f"not valid JSON: {exc}") from exc
        return cls.from_dict(d)


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
    """A ``TorchTier`` serving an MLP student described by ``spec`` (which pruning may change on a swap)."""

    def __init__(self, spec: StudentSpec, module: nn.Module, student_input: StudentInput, **kwargs: Any) -> None:
        dim = spec.input_dim
        super().__init__(
            kwargs.pop("name", "distilled"),
            module,
            preprocess=lambda batch: batch_inputs(student_input, batch, dim),
            classes=spec.classes,
            **kwargs,
        )
        self.spec = spec
        self.student_input = student_input

    def swap_student(self, module: nn.Module, spec: StudentSpec, version: str) -> None:
        """Serve ``module`` (built for ``spec``, possibly quantized) as ``version``, atomically."""
        if (spec.input_dim, spec.n_classes, spec.classes) != (self.spec.input_dim, self.spec.n_classes,
                                                               self.spec.classes):
            raise ConfigError("student", "a new student must keep the input width, class count and class labels")
        self.swap_module(module, version)
        self.spec = spec


def student_tier(
    spec: StudentSpec,
    student_input: StudentInput,
    *,
    name: str = "distilled",
    module: nn.Module | None = None,
    seed: int = 0,
    cost: CostModel | float = 0.0,
    capabilities: Capabilities | None = None,
    version: str = "0",
    num_threads: int | None = None,
) -> StudentTier:
    """A tier serving a student of ``spec`` (freshly initialised from ``seed`` unless ``module`` is given)."""
    return StudentTier(
        spec,
        module if module is not None else build_student(spec, seed),
        student_input,
        name=name,
        cost=cost,
        capabilities=capabilities,
        version=version,
        num_threads=num_threads,
    )
