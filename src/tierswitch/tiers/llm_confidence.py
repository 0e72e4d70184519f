"""Confidence of a generated answer from its token ``logprobs`` (the chat-completions ``logprobs.content`` list).

Reductions: ``mean`` (mean token probability), ``min`` (the least likely token), ``first`` (the probability of the
first answer token, which for a closed-label or yes/no answer is the probability of the answer itself). No logprobs
in the response: no confidence (None), never a made-up one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from tierswitch.errors import ConfigError

__all__ = ["REDUCTIONS", "check_reduction", "reduce_logprobs", "token_logprobs"]

REDUCTIONS = ("mean", "min", "first")


def check_reduction(value: Any, field: str = "confidence") -> str | None:
    if value is None or value in REDUCTIONS:
        return value  # type: ignore[no-any-return]
    raise ConfigError(field, f"must be one of {list(REDUCTIONS)} or null, got {value!r}")


def token_logprobs(logprobs: Any) -> list[float]:
    """The per-token log probabilities of a choice's ``logprobs`` object ([] when absent or malformed)."""
    if not isinstance(logprobs, Mapping):
        return []
    content = logprobs.get("content")
    if not isinstance(content, Sequence) or isinstance(content, str):
        return []
    out = []
    for item in content:
        value = item.get("logprob") if isinstance(item, Mapping) else None
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out.append(float(min(0.0, value)))
    return out


def reduce_logprobs(values: Sequence[float], reduction: str | None) -> float | None:
    """The confidence in [0, 1] the ``reduction`` gives over token log probabilities (None if none or no values)."""
    if reduction is None or not values:
        return None
    if reduction == "first":
        return math.exp(values[0])
    if reduction == "min":
        return math.exp(min(values))
    return sum(math.exp(v) for v in values) / len(values)
