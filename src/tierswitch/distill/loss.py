"""The distillation loss (Hinton et al.): hard-label cross-entropy plus temperature-softened KL to the teacher.

    loss = alpha * CE(student, hard label)
         + (1 - alpha) * T^2 * KL(softmax(teacher / T) || softmax(student / T))
         + mse_weight * MSE(student logits, teacher logits)       (both centred per row)

Both the teacher's and the student's logits are divided by T (forgetting the student's is the classic bug); T^2 keeps
the soft term's gradient scale independent of T. A teacher that gives probabilities is turned into logits with
``log p`` (logits are defined up to a per-row constant, which softmax and the centred MSE both ignore).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from tierswitch.errors import ConfigError

__all__ = ["distill_loss", "probs_to_logits"]

_EPS = 1e-8


def probs_to_logits(probs: torch.Tensor) -> torch.Tensor:
    """Logits whose softmax is ``probs`` (zeros are clamped to 1e-8 first)."""
    return torch.log(probs.clamp_min(_EPS))


def distill_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    temperature: float = 2.0,
    alpha: float = 0.5,
    mse_weight: float = 0.0,
) -> torch.Tensor:
    """Mean loss over the batch. ``labels`` are class indices (the teacher's hard label, or the ground truth when
    known); ``student_logits`` and ``teacher_logits`` have shape (batch, n_classes)."""
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
        raise ConfigError("distill.temperature", f"must be a finite number > 0, got {temperature!r}")
    if not (isinstance(alpha, (int, float)) and 0.0 <= alpha <= 1.0):
        raise ConfigError("distill.alpha", f"must be in [0, 1], got {alpha!r}")
    if not (isinstance(mse_weight, (int, float)) and math.isfinite(mse_weight) and mse_weight >= 0):
        raise ConfigError("distill.mse_weight", f"must be a finite number >= 0, got {mse_weight!r}")
    if student_logits.shape != teacher_logits.shape or student_logits.ndim != 2:
        raise ConfigError(
            "distill.teacher",
            f"student logits {tuple(student_logits.shape)} and teacher outputs {tuple(teacher_logits.shape)} "
            "must both be (batch, n_classes); check the student's n_classes matches the teacher's classes",
        )
    loss = alpha * F.cross_entropy(student_logits, labels)
    if alpha < 1.0:
        t = float(temperature)
        log_p_student = F.log_softmax(student_logits / t, dim=1)
        log_p_teacher = F.log_softmax(teacher_logits / t, dim=1)
        kl = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
        loss = loss + (1.0 - alpha) * t * t * kl
    if mse_weight > 0:
        s = student_logits - student_logits.mean(dim=1, keepdim=True)
        te = teacher_logits - teacher_logits.mean(dim=1, keepdim=True)
        loss = loss + mse_weight * F.mse_loss(s, te)
    return loss
