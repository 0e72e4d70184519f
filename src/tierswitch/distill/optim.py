"""A plain AdamW (decoupled weight decay, bias-corrected moments) in a handful of tensor ops.

``torch.optim``'s optimizers import ``torch._dynamo`` the first time one is built (seconds of start-up in every
fresh process: the distill worker process pays it before it can train). The student is a small MLP, so this
dozen-line version does the same update without that import. Same maths as ``torch.optim.AdamW`` (amsgrad off).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

__all__ = ["AdamW"]


class AdamW:
    """``torch.optim.AdamW``'s update for the parameters of a small module."""

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0) -> None:
        self.params = [p for p in params if p.requires_grad]
        self.lr, self.betas, self.eps, self.weight_decay = lr, betas, eps, weight_decay
        self.t = 0
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        self.t += 1
        b1, b2 = self.betas
        c1, c2 = 1.0 - b1 ** self.t, 1.0 - b2 ** self.t
        step_size = self.lr / c1
        for p, m, v in zip(self.params, self.m, self.v):
            if p.grad is None:
                continue
            g = p.grad
            if self.weight_decay:
                p.mul_(1.0 - self.lr * self.weight_decay)
            m.mul_(b1).add_(g, alpha=1.0 - b1)
            v.mul_(b2).addcmul_(g, g, value=1.0 - b2)
            denom = (v / c2).sqrt_().add_(self.eps)
            p.addcdiv_(m, denom, value=-step_size)
