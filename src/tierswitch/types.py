"""The value objects that flow through a request: one context in, one frozen result out.

``Prediction`` is what a tier returns for one input; ``Decision`` is what a policy returns; ``Routed`` is what the
router returns to the caller; ``DecisionRecord`` is what every decision hook receives. ``RoutingContext`` is the
one mutable object: the router fills it in as a request moves through the cascade, and policies only read it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Protocol

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "Accepting",
    "Decision",
    "DecisionRecord",
    "Features",
    "Modality",
    "Prediction",
    "Request",
    "Routed",
    "RoutingContext",
    "TierView",
    "TraceStep",
    "Usage",
]

Modality = Literal["text", "image", "tabular", "multimodal"]
MODALITIES: tuple[str, ...] = ("text", "image", "tabular", "multimodal")


class PriceView(Protocol):
    """A tier's price as policies read it (``tiers.base.CostModel`` is one)."""

    def cost(self, length: int) -> float: ...


class TierView(Protocol):
    """What a policy may read of a tier through the ``RoutingContext`` (``tiers.base.Tier`` is one). A protocol,
    so this ground module names no higher floor."""

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...

    @property
    def cost_model(self) -> PriceView: ...


class Accepting(Protocol):
    """The part of a policy the router calls after a tier answered (``policies.base.Policy`` is one)."""

    def accept(self, ctx: RoutingContext, prediction: Prediction) -> bool: ...


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens one language-model call consumed, as the server's ``usage`` reported them (or as estimated)."""

    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class Prediction:
    """One tier's answer for one input.

    ``probs`` (read-only array, when the tier has class probabilities) and ``confidence`` (in [0, 1]) are what
    cascades and uncertainty probes read; ``cost`` is in the tiers' shared cost unit; ``latency_s`` is measured
    around the tier call (a batch's time is shared equally among its items). ``usage`` is the token count of a
    language-model call (None for other tiers).
    """

    output: Any
    tier: str
    tier_version: str
    cost: float
    latency_s: float
    probs: np.ndarray | None = None
    confidence: float | None = None
    usage: Usage | None = None


@dataclass(frozen=True, slots=True)
class Request:
    """A payload as the router sees it: its detected (or caller-given) modality and its canonical digest."""

    payload: Any
    modality: str
    digest: str


@dataclass(slots=True)
class Features:
    """What the estimator measured about one input.

    ``length`` is the input's size in the unit tier capabilities and per-unit costs use: approximate tokens for
    text, pixels for images, elements for tabular arrays, the sum of the parts for a multimodal dict.
    """

    modality: str
    length: int
    chars: int = 0
    tokens: int = 0
    pixels: int = 0
    elements: int = 0
    turns: int = 0
    uncertainty: float | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """A policy's choice: ``tier`` (None means the policy abstains, so the next composed policy decides).

    ``policy`` is the policy that decided (the router asks it whether to accept a prediction, for cascades);
    ``propensity`` is the probability with which a randomised policy chose this tier (1.0 for deterministic ones),
    logged so that new policies can be evaluated offline.
    """

    tier: str | None
    reason: str
    policy: Accepting | None = None
    propensity: float = 1.0


class TraceStep(NamedTuple):
    """One step of a request's path: ``kind`` is one of cache_hit, cache_miss, probe, decide, call, accept,
    escalate, failure, fallback. (A NamedTuple rather than a frozen dataclass: a request makes several, and
    building one costs a third as much.)"""

    kind: str
    tier: str | None = None
    detail: str = ""
    confidence: float | None = None
    latency_s: float | None = None


@dataclass(frozen=True, slots=True)
class Routed:
    """The router's answer: the output, which tier gave it, what it cost and why.

    ``cost`` adds up every tier call this request made (a cascade that escalated pays for both tiers); a cache hit
    costs 0. ``latency_s`` is the router's wall time for the request. ``usage`` is the answering tier's token
    count (language-model tiers only).
    """

    output: Any
    tier: str
    cost: float
    latency_s: float
    cached: bool
    score: float | None
    trace: tuple[TraceStep, ...]
    confidence: float | None = None
    probs: np.ndarray | None = None
    tier_version: str = ""
    digest: str = ""
    request_id: int = 0
    usage: Usage | None = None

    def explain(self) -> str:
        """A human-readable account of how this answer was reached, one step a line."""
        lines = []
        for step in self.trace:
            parts = [step.kind]
            if step.tier:
                parts.append(step.tier)
            if step.kind == "decide" and self.score is not None:
                parts.append(f"score={self.score:.3f}")
            if step.confidence is not None:
                parts.append(f"confidence={step.confidence:.3f}")
            if step.latency_s is not None:
                parts.append(f"latency={step.latency_s * 1e3:.3f}ms")
            if step.detail:
                parts.append(step.detail)
            lines.append(" ".join(parts))
        return "\n".join(lines)


@dataclass(slots=True)
class RoutingContext:
    """Everything a policy may read about the request in flight.

    ``capable`` lists the names of the tiers that accept this input, cheapest first (the capability filter has
    already run). ``predictions`` holds every prediction made so far for this request (probes and cascade steps),
    by tier name; ``tried`` lists tiers called in order; ``agreement`` is each tier's live agreement with the most
    expensive tier (from shadow samples), when known. ``verdicts`` is where a policy's ``accept`` may say, per tier,
    which signal decided and why (e.g. ``"verifier 0.31 < 0.50"``); the router puts it in the trace.
    ``extra_cost`` is what a policy spent judging answers (a self-verification call); it is part of the request's
    cost.
    """

    request: Request
    features: Features
    score: float
    capable: tuple[str, ...]
    tiers: Mapping[str, TierView]
    meta: Mapping[str, Any] = field(default_factory=dict)
    predictions: dict[str, Prediction] = field(default_factory=dict)
    tried: list[str] = field(default_factory=list)
    agreement: Mapping[str, float] = field(default_factory=dict)
    verdicts: dict[str, str] = field(default_factory=dict)
    extra_cost: float = 0.0

    def next_capable(self, after: str) -> str | None:
        """The next more expensive capable tier after ``after`` that was not tried yet, or None."""
        seen = False
        for name in self.capable:
            if seen and name not in self.tried:
                return name
            if name == after:
                seen = True
        return None


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    """What every decision hook receives, once per request (also for cache hits).

    It carries the payload and every prediction made (so distillation can learn from full-tier answers), the
    features, score and decision (for logs and tuning), and the propensity (for offline policy evaluation).
    """

    request_id: int
    request: Request
    features: Features | None
    score: float | None
    capable: tuple[str, ...]
    decided_tier: str | None
    reason: str
    propensity: float
    tier: str
    cost: float
    latency_s: float
    cached: bool
    predictions: Mapping[str, Prediction]
    trace: tuple[TraceStep, ...]
    meta: Mapping[str, Any]
    cache_stats: Mapping[str, int] | None = None
