"""The promotion gate: does the candidate agree with the teacher clearly more often than the serving student?

Both students are scored on the same holdout of recent teacher-labelled samples that were never trained on. The
difference is paired, so the test looks only at the items where they disagree: ``b`` (candidate right, serving
wrong) and ``c`` (the reverse). Promotion needs ``(b - c) / n >= margin`` *and* ``b - c >= z * sqrt(b + c)`` (a
one-sided sign test, McNemar's normal approximation), with at least ``min_samples`` items. The candidate must also
beat the best constant answer (always the holdout's most frequent label) by ``z`` standard errors: a student that
has learned nothing real is never promoted, however poor the serving one. With a teacher giving random labels
neither test passes beyond chance, so nothing is promoted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tierswitch.errors import ConfigError
from tierswitch.validation import finite, positive

__all__ = ["GateConfig", "GateResult", "PromotionEvent", "judge"]


@dataclass(frozen=True, slots=True)
class GateConfig:
    """``margin``: minimum agreement gain; ``z``: significance of the paired test; ``min_samples``: holdout size
    below which the gate abstains."""

    margin: float = 0.01
    z: float = 2.5
    min_samples: int = 200

    def __post_init__(self) -> None:
        if finite("distill.gate.margin", self.margin, low=0.0, high=1.0) == 1.0:
            raise ConfigError("distill.gate.margin", "must be below 1 (a gain of every holdout item), got 1")
        finite("distill.gate.z", self.z, low=0.0)
        positive("distill.gate.min_samples", self.min_samples, integer=True)


@dataclass(frozen=True, slots=True)
class GateResult:
    """One evaluation: agreement of the serving student (before) and the candidate (after) on ``n`` items."""

    step: int
    n: int
    agreement_serving: float
    agreement_candidate: float
    promote: bool
    reason: str


@dataclass(frozen=True, slots=True)
class PromotionEvent:
    """A promotion: the step, the holdout agreement before/after, the version now serving and the variant served
    (float, pruned, int8...)."""

    step: int
    samples_trained: int
    n: int
    agreement_before: float
    agreement_after: float
    version: str
    variant: str
    at: float


def judge(
    step: int, candidate_right: np.ndarray, serving_right: np.ndarray, labels: np.ndarray, config: GateConfig
) -> GateResult:
    """Decide on promotion from per-item correctness (bool arrays over the same holdout) and the teacher's labels."""
    n = int(len(candidate_right))
    if n == 0:
        return GateResult(step, 0, 0.0, 0.0, False, "empty holdout")
    a_cand = float(candidate_right.mean())
    a_serv = float(serving_right.mean())
    if n < config.min_samples:
        return GateResult(step, n, a_serv, a_cand, False, f"holdout has {n} < {config.min_samples} samples")
    p0 = float(np.bincount(np.asarray(labels, dtype=np.int64)).max()) / n  # the best constant answer's agreement
    k = int(np.count_nonzero(candidate_right))
    if p0 < 1.0 and (k - n * p0) < config.z * math.sqrt(n * p0 * (1.0 - p0)):
        return GateResult(step, n, a_serv, a_cand, False, f"candidate {a_cand:.3f} is not clearly above the "
                          f"constant answer's {p0:.3f}")
    b = int(np.count_nonzero(candidate_right & ~serving_right))
    c = int(np.count_nonzero(~candidate_right & serving_right))
    gain = (b - c) / n
    if gain < config.margin:
        return GateResult(step, n, a_serv, a_cand, False, f"gain {gain:+.3f} < margin {config.margin}")
    if (b - c) < config.z * math.sqrt(b + c):
        return GateResult(step, n, a_serv, a_cand, False, f"gain {gain:+.3f} not significant (b={b}, c={c})")
    return GateResult(step, n, a_serv, a_cand, True, f"gain {gain:+.3f} (b={b}, c={c})")
