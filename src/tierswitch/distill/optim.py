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
        """One update of every parameter that has a gradient."""
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

    @torch.no_grad()
    def step_rows(self, table: torch.Tensor, m: torch.Tensor, v: torch.Tensor, ids: torch.Tensor,
                  grad: torch.Tensor) -> None:
        """The same update for the rows ``ids`` of ``table`` only (their gradient ``grad``), with the moments ``m``
        and ``v`` of the table; call after ``step()`` of the same iteration. The "lazy" Adam of
        ``torch.optim.SparseAdam``: a wide sparse first layer costs what the batch touches."""
        b1, b2 = self.betas
        t = max(self.t, 1)
        c1, c2 = 1.0 - b1 ** t, 1.0 - b2 ** t
        pr, mr, vr = table.index_select(0, ids), m.index_select(0, ids), v.index_select(0, ids)
        if self.weight_decay:
            pr.mul_(1.0 - self.lr * self.weight_decay)
        mr.mul_(b1).add_(grad, alpha=1.0 - b1)
        vr.mul_(b2).addcmul_(grad, grad, value=1.0 - b2)
        pr.addcdiv_(mr, (vr / c2).sqrt_().add_(self.eps), value=-self.lr / c1)
        table.index_copy_(0, ids, pr)
        m.index_copy_(0, ids, mr)
        v.index_copy_(0, ids, vr)
