"""Smaller students: INT8 dynamic quantization of the Linear layers and structured pruning of hidden units.

Each variant is served only when its agreement with the teacher on the holdout stays within ``tolerance`` of the
float student's; ``compress`` reports size, latency and agreement of every variant it tried. Quantization happens
where the student is served (after loading float weights), so only float safetensors ever travel.
"""

from __future__ import annotations

import copy
import statistics
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from tierswitch.distill.student import StudentSpec
from tierswitch.errors import ConfigError

__all__ = ["Compressed", "Variant", "agreement", "compress", "module_bytes", "prune_hidden", "quantize_int8"]


def quantize_int8(module: nn.Module) -> nn.Module:
    """A copy of ``module`` whose ``nn.Linear`` layers run INT8 weights with dynamically quantized activations."""
    with warnings.catch_warnings():
        # torch.ao.quantization is deprecated in favour of torchao, which is not a dependency; the eager dynamic
        # path still works on torch 2.13 CPU and is the one kernel that needs no calibration data.
        warnings.simplefilter("ignore")
        from torch.ao.quantization import quantize_dynamic

        q: nn.Module = quantize_dynamic(  # type: ignore[no-untyped-call]
            copy.deepcopy(module).eval(), {nn.Linear}, dtype=torch.qint8)
    return q


def module_bytes(module: nn.Module) -> int:
    """Bytes of the weights as served (INT8 weights count 1 byte each, plus their float bias and scale)."""
    total = 0
    for sub in module.modules():
        if hasattr(sub, "_packed_params") and callable(getattr(sub, "weight", None)):
            w, b = sub.weight(), sub.bias()  # type: ignore[operator]  # quantized Linear: accessors, not tensors
            total += w.numel() * w.element_size() + 8  # int8 weights + scale and zero point
            total += 0 if b is None else b.numel() * b.element_size()
        else:
            for p in list(sub.parameters(recurse=False)) + list(sub.buffers(recurse=False)):
                total += p.numel() * p.element_size()
    return total


def prune_hidden(module: nn.Sequential, spec: StudentSpec, share: float) -> tuple[nn.Sequential, StudentSpec]:
    """Remove ``share`` of each hidden layer's units: those with the smallest product of incoming and outgoing
    weight norms. Returns a smaller dense MLP (really fewer FLOPs, not a mask) and its spec."""
    if not 0.0 <= share < 1.0:
        raise ConfigError("distill.prune", f"must be in [0, 1), got {share!r}")
    linears = [m for m in module if isinstance(m, nn.Linear)]
    weights = [(lin.weight.detach().clone(), lin.bias.detach().clone()) for lin in linears]
    hidden = []
    for i in range(len(weights) - 1):
        w_in, b_in = weights[i]
        w_out, b_out = weights[i + 1]
        score = w_in.norm(dim=1) * w_out.norm(dim=0)
        keep_n = max(1, round(w_in.shape[0] * (1.0 - share)))
        keep = torch.sort(torch.topk(score, keep_n).indices).values
        weights[i] = (w_in[keep], b_in[keep])
        weights[i + 1] = (w_out[:, keep], b_out)
        hidden.append(keep_n)
    new_spec = StudentSpec(spec.input_dim, tuple(hidden), spec.n_classes, spec.classes)
    layers: list[nn.Module] = []
    for i, (w, b) in enumerate(weights):
        lin = nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            lin.weight.copy_(w)
            lin.bias.copy_(b)
        layers.append(lin)
        if i < len(weights) - 1:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers).eval(), new_spec


def agreement(module: nn.Module, x: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of rows where the module's argmax equals ``labels``."""
    with torch.inference_mode():
        return float((module(x).argmax(dim=1) == labels).float().mean()) if len(labels) else 0.0


def _latency_us(module: nn.Module, x: torch.Tensor, repeats: int) -> float:
    """Median wall time of a one-item forward pass, in microseconds."""
    one = x[:1]
    times = []
    with torch.inference_mode():
        for _ in range(repeats):
            t0 = time.perf_counter()
            module(one)
            times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6 if times else 0.0


@dataclass(frozen=True, slots=True)
class Variant:
    """One way to serve the student, measured on the holdout."""

    name: str
    size_bytes: int
    latency_us: float
    agreement: float
    accepted: bool


@dataclass
class Compressed:
    """The variant to serve: ``module`` (float, possibly pruned; INT8 when ``int8``), ``float_module`` (what gets
    published), its ``spec``, and every variant measured."""

    module: nn.Module
    float_module: nn.Sequential
    spec: StudentSpec
    int8: bool
    chosen: str
    variants: list[Variant] = field(default_factory=list)


def compress(
    module: nn.Sequential,
    spec: StudentSpec,
    x: np.ndarray,
    labels: np.ndarray,
    *,
    int8: bool = False,
    prune: float = 0.0,
    tolerance: float = 0.01,
    latency_repeats: int = 50,
) -> Compressed:
    """Try pruning and/or INT8 on ``module``; serve the smallest variant whose agreement with ``labels`` (the
    teacher's) on ``x`` is within ``tolerance`` of the float student's."""
    xt = torch.as_tensor(np.asarray(x, dtype=np.float32))
    yt = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    base_agree = agreement(module, xt, yt)
    candidates: list[tuple[str, nn.Module, nn.Sequential, StudentSpec, bool]] = [
        ("float", module, module, spec, False)
    ]
    if prune > 0:
        pruned, pspec = prune_hidden(module, spec, prune)
        candidates.append((f"pruned{prune:.0%}", pruned, pruned, pspec, False))
    if int8:
        for name, _, fmod, fspec, _ in list(candidates):
            candidates.append((f"{name}+int8", quantize_int8(fmod), fmod, fspec, True))
    variants: list[Variant] = []
    best = candidates[0]
    best_size = module_bytes(module)
    for name, served, fmod, fspec, is_int8 in candidates:
        agree = agreement(served, xt, yt)
        size = module_bytes(served)
        ok = agree >= base_agree - tolerance
        variants.append(Variant(name, size, _latency_us(served, xt, latency_repeats), agree, ok))
        if ok and size < best_size:
            best, best_size = (name, served, fmod, fspec, is_int8), size
    name, served, fmod, fspec, is_int8 = best
    return Compressed(served, fmod, fspec, is_int8, name, variants)
