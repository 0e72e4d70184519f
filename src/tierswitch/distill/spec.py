"""``StudentSpec``: the student's architecture, class labels and featuriser as plain data (JSON), importable without
torch, so any process can rebuild the student without pickle."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tierswitch.distill.features import Featurizer, HashedTextFeatures, features_from_dict
from tierswitch.errors import ConfigError
from tierswitch.validation import describe, positive

__all__ = ["StudentSpec"]


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
        if isinstance(self.hidden, (str, bytes)) or not isinstance(self.hidden, (Sequence, np.ndarray)):
            raise ConfigError("student.hidden", f"must be a list, e.g. [32] for one hidden layer of 32; got "
                                                f"{describe(self.hidden)}")
        object.__setattr__(self, "hidden", tuple(int(h) if isinstance(h, np.integer) else h for h in self.hidden))
        if self.classes is not None:
            if isinstance(self.classes, (str, bytes)) or not hasattr(self.classes, "__iter__"):
                raise ConfigError("student.classes", f'must be a list, e.g. ["neg", "pos"]; got '
                                                     f"{describe(self.classes)}")
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
    def for_text(cls, classes: Sequence[Any], hidden: Sequence[int] = (128,),
                 features: Featurizer | dict[str, Any] | None = None) -> StudentSpec:
        """A text student over ``classes``: hashed word 1-2-grams + char 3-4-grams (``HashedTextFeatures()``)."""
        feats = features_from_dict(features) if isinstance(features, dict) else features or HashedTextFeatures()
        labels = list(classes)
        return cls(feats.dim, tuple(hidden), len(labels), tuple(labels), feats)

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
