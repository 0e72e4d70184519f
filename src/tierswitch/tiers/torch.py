"""A torch ``nn.Module`` as a tier: batched, ``inference_mode``, eval mode, with atomic weight swaps.

The serving pair ``(module, version)`` is one tuple replaced in a single assignment, so a concurrent predict sees
either the old pair or the new one. ``predict`` snapshots the pair once (in ``_serving_version``) and runs the whole
batch on that snapshot: a request is served entirely by the old or entirely by the new weights, and its predictions
carry the version that served them. torch is imported only here (and in ``tierswitch.distill``'s trainer modules).
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from tierswitch.errors import ConfigError
from tierswitch.tiers.base import Capabilities, CostModel, RawOutput, Tier

__all__ = ["TorchTier", "softmax_postprocess"]

Preprocess = Callable[[Sequence[Any]], Any]
Postprocess = Callable[[torch.Tensor], Sequence[RawOutput]]


def softmax_postprocess(classes: Sequence[Any] | None = None) -> Postprocess:
    """Logits ``(batch, n_classes)`` -> one ``RawOutput`` per row: the argmax class (``classes[i]`` when given, else
    the index) and the softmax probabilities."""

    def post(logits: torch.Tensor) -> list[RawOutput]:
        if logits.ndim != 2:
            raise ValueError(f"expected logits of shape (batch, n_classes), got {tuple(logits.shape)}")
        probs = torch.softmax(logits.float(), dim=1).cpu().numpy().astype(np.float64)
        top = probs.argmax(axis=1)
        if classes is not None and probs.shape[1] != len(classes):
            raise ValueError(f"model gives {probs.shape[1]} logits but {len(classes)} classes were declared")
        return [
            RawOutput(classes[int(i)] if classes is not None else int(i), row) for i, row in zip(top, probs)
        ]

    return post


class TorchTier(Tier):
    """Serve a torch module.

    ``preprocess(batch)`` turns a list of payloads into the model's input (a tensor or a numpy array);
    ``postprocess(outputs)`` turns the model's output into one ``RawOutput`` per item (default: softmax over logits,
    argmax output mapped through ``classes`` when given). ``num_threads`` caps torch's intra-op threads of the
    calling thread (set once per thread), so a serving thread and a background trainer can split the cores.
    """

    def __init__(
        self,
        name: str,
        module: nn.Module,
        *,
        preprocess: Preprocess,
        postprocess: Postprocess | None = None,
        classes: Sequence[Any] | None = None,
        cost: CostModel | float = 0.0,
        capabilities: Capabilities | None = None,
        version: str = "1",
        device: str = "cpu",
        num_threads: int | None = None,
    ) -> None:
        super().__init__(name, cost=cost, capabilities=capabilities, version=version)
        if not isinstance(module, nn.Module):
            raise ConfigError("tier.module", f"must be a torch.nn.Module, got {type(module).__name__}")
        if not callable(preprocess):
            raise ConfigError("tier.preprocess", "must be a callable(batch) -> tensor or array")
        if num_threads is not None and (not isinstance(num_threads, int) or num_threads < 1):
            raise ConfigError("tier.num_threads", f"must be a positive integer or None, got {num_threads!r}")
        self.preprocess = preprocess
        self.classes = list(classes) if classes is not None else None
        self.postprocess = postprocess if postprocess is not None else softmax_postprocess(self.classes)
        self.device = torch.device(device)
        self.num_threads = num_threads
        self._active: tuple[nn.Module, str] = (self._prepare(module), self._version)
        self._swap_lock = threading.Lock()
        self._local = threading.local()
        self.swaps = 0

    # -- the serving pair -----------------------------------------------------------------------------------
    def _prepare(self, module: nn.Module) -> nn.Module:
        module = module.to(self.device)
        module.eval()
        return module

    @property
    def module(self) -> nn.Module:
        """The module now serving (do not mutate it in place: swap a new one in)."""
        return self._active[0]

    @property
    def version(self) -> str:
        return self._active[1]

    def snapshot(self) -> tuple[nn.Module, str]:
        """The (module, version) pair now serving, read once."""
        return self._active

    def set_version(self, version: str) -> None:
        with self._swap_lock:
            self._active = (self._active[0], str(version))
            self._version = str(version)

    def swap_module(self, new: nn.Module | Mapping[str, torch.Tensor], version: str) -> None:
        """Atomically serve ``new`` (a module, or a state dict for a copy of the current architecture) as
        ``version``. A state dict must match the current module's tensor names and shapes exactly
        (``ConfigError`` otherwise). Requests in flight finish on the old pair; the old module is never mutated."""
        if isinstance(new, nn.Module):
            module = self._prepare(new)
        elif isinstance(new, Mapping):
            module = copy.deepcopy(self._active[0])
            try:
                module.load_state_dict(dict(new), strict=True)
            except RuntimeError as exc:
                raise ConfigError(
                    "tier.weights", f"state dict does not fit tier {self.name!r}'s module: {exc}"
                ) from exc
            module = self._prepare(module)
        else:
            raise ConfigError("tier.weights", f"expected an nn.Module or a state dict, got {type(new).__name__}")
        with self._swap_lock:
            self._active = (module, str(version))  # one assignment: readers see the old pair or the new one
            self._version = str(version)
            self.swaps += 1

    def _serving_version(self) -> str:
        active = self._active
        self._local.active = active  # the batch about to run uses exactly this pair
        return active[1]

    # -- prediction -----------------------------------------------------------------------------------------
    def _set_threads(self) -> None:
        if self.num_threads is not None and getattr(self._local, "threads", None) != self.num_threads:
            torch.set_num_threads(self.num_threads)  # affects the calling thread only
            self._local.threads = self.num_threads

    def forward(self, batch: Sequence[Any], module: nn.Module | None = None) -> torch.Tensor:
        """Preprocess ``batch`` and run ``module`` (default: the serving one) under ``inference_mode``."""
        self._set_threads()
        module = module if module is not None else self._active[0]
        inputs = self.preprocess(batch)
        if isinstance(inputs, np.ndarray):
            inputs = torch.from_numpy(np.ascontiguousarray(inputs, dtype=np.float32))
        if not isinstance(inputs, torch.Tensor):
            raise TypeError(f"preprocess must return a tensor or numpy array, got {type(inputs).__name__}")
        with torch.inference_mode():
            out: torch.Tensor = module(inputs.to(self.device))
            return out

    def _predict_raw(self, batch: Sequence[Any]) -> Sequence[RawOutput]:
        active = getattr(self._local, "active", None) or self._active
        self._local.active = None
        outputs = self.forward(batch, active[0])
        raws = self.postprocess(outputs)
        return [r if isinstance(r, RawOutput) else RawOutput(*r) for r in raws]

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        module = self.module
        info["parameters"] = sum(p.numel() for p in module.parameters())
        info["swaps"] = self.swaps
        return info
