"""``DistillConfig``: every knob of the trainer as plain, validated data (``from_dict`` names the field at fault)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from tierswitch.distill.gate import GateConfig
from tierswitch.errors import ConfigError
from tierswitch.validation import finite, positive

__all__ = ["DistillConfig"]


@dataclass(frozen=True)
class DistillConfig:
    """Trainer settings.

    batch_size: fresh samples per step; replay_share: share of each mini-batch drawn from the replay reservoir;
    replay_ratio: replay-only steps the background trainer takes per fresh step, even while fresh samples wait, so
    the replay share holds under steady traffic (0.5: one every other fresh step; 0 disables; at most 100);
    idle_replay: replay-only steps per fresh step the trainer may reach, counting the replay_ratio ones, while no
    fresh samples wait (0: none beyond replay_ratio);
    lr / weight_decay: AdamW; temperature / alpha / mse_weight: the loss (see ``distill.loss``); use_truth: train
    the hard term on ground truth when a sample has it; grad_clip: max gradient norm (0 disables);
    eval_every: gate every K optimizer steps (fresh and replay); holdout_share / holdout_size: share of fresh
    samples set aside (never trained on) and the bound on that recent holdout; margin / z / min_holdout: the gate
    (see ``distill.gate``). Warm-up rule: until the holdout holds ``min_holdout`` items, one fresh sample in
    ``1 / max(holdout_share, warmup_share)`` goes to it, so with the defaults (min_holdout 40, warmup_share 0.33)
    the first gate that can promote comes after ~120 teacher samples, whatever the traffic (holdout_share 0: no
    holdout at all);
    int8 / prune / tolerance: compression of the served student; num_threads: torch threads of the trainer thread;
    take_timeout_s: how long an idle background step waits for samples; linger_s: how much longer it waits for a
    partial mini-batch to fill; max_busy: the largest share of wall time the background thread (``start()``) spends
    in steps: after a step that computed for t seconds (waiting for samples is not counted) it pauses
    t * (1 - max_busy) / max_busy, so serving threads in the same process get the GIL and the cores back (1.0: no
    pause; the distill worker, a process of its own, never pauses);
    seed: every random choice.
    """

    batch_size: int = 32
    replay_share: float = 0.25
    replay_ratio: float = 1.0
    idle_replay: int = 12
    max_busy: float = 0.5
    lr: float = 1e-2
    weight_decay: float = 0.0
    temperature: float = 2.0
    alpha: float = 0.5
    mse_weight: float = 0.0
    use_truth: bool = True
    grad_clip: float = 5.0
    eval_every: int = 5
    holdout_share: float = 0.1
    warmup_share: float = 0.33
    holdout_size: int = 1000
    margin: float = 0.01
    z: float = 2.5
    min_holdout: int = 40
    int8: bool = False
    prune: float = 0.0
    tolerance: float = 0.01
    num_threads: int = 1
    take_timeout_s: float = 0.2
    linger_s: float = 0.05
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("batch_size", "eval_every", "holdout_size", "num_threads"):
            positive(f"distill.{name}", getattr(self, name), integer=True)
        if isinstance(self.idle_replay, bool) or not isinstance(self.idle_replay, int) or self.idle_replay < 0:
            raise ConfigError("distill.idle_replay", f"must be an integer >= 0, got {self.idle_replay!r}")
        for name, high in (("replay_share", 0.9), ("holdout_share", 0.9), ("warmup_share", 0.9), ("alpha", 1.0),
                           ("prune", 0.95), ("tolerance", 1.0), ("weight_decay", math.inf), ("mse_weight", math.inf),
                           ("grad_clip", math.inf), ("linger_s", math.inf)):
            finite(f"distill.{name}", getattr(self, name), low=0.0, high=high)
        for name in ("lr", "temperature", "take_timeout_s"):
            finite(f"distill.{name}", getattr(self, name), low=0.0, strict=True)
        busy = self.max_busy
        if isinstance(busy, bool) or not isinstance(busy, (int, float)) or not 0.0 < busy <= 1.0:
            raise ConfigError("distill.max_busy", f"must be a number in (0, 1] (share of wall time), got {busy!r}")
        ratio = self.replay_ratio
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0.0 <= ratio <= 100.0:
            raise ConfigError("distill.replay_ratio", f"must be a number in [0, 100] (replay steps per fresh step), "
                                                      f"got {ratio!r}")
        _ = self.gate  # validates margin, z, min_holdout

    @property
    def gate(self) -> GateConfig:
        return GateConfig(margin=self.margin, z=self.z, min_samples=self.min_holdout)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DistillConfig:
        """Build from plain data (a config file's ``distill`` section); unknown keys are an error."""
        if not isinstance(d, dict):
            raise ConfigError("distill", f"must be a mapping, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"distill.{unknown[0]}", f"unknown setting; known: {sorted(known)}")
        return cls(**d)
