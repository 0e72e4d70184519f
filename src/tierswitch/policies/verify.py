"""Signals that judge a generated answer, for cascades over language models (``VerifiedCascade``).

Free text has no class probabilities, so a cascade needs another signal to accept a cheap tier's answer. A
``Signal`` scores one (payload, prediction) pair in [0, 1], or returns None when it cannot judge (then the answer
is not accepted). Implementations here: ``LogprobConfidence`` (the tier's logprob confidence), ``Verifier`` (a user
callable ``verify(prompt, answer) -> float``) and ``AllOf`` (the weakest of several); ``FormatCheck`` and
``SelfVerify`` live in their own modules. A signal never imports the router.
"""

from __future__ import annotations

import contextvars
import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from tierswitch.errors import ConfigError
from tierswitch.tiers.chat import last_user_text
from tierswitch.types import Prediction

__all__ = ["AllOf", "LogprobConfidence", "Signal", "Verifier", "answer_text", "done_spending", "prompt_text", "spend",
           "spending"]

# What signals spent (model calls) while judging one answer: a list per judgement, in a context variable so that
# concurrent requests on threads or tasks never mix their costs. ``VerifiedCascade`` opens it and adds the total to
# the request's cost; ``spend`` outside a judgement is a no-op.
_spent: contextvars.ContextVar[list[float] | None] = contextvars.ContextVar("tierswitch_signal_spent", default=None)


def spend(cost: float) -> None:
    """Record that a signal paid ``cost`` (in the tiers' cost unit) for the judgement in progress."""
    spent = _spent.get()
    if spent is not None:
        spent.append(cost)


def spending() -> tuple[list[float], contextvars.Token[list[float] | None]]:
    """Open a fresh record for one judgement; close it with ``done_spending(token)``."""
    record: list[float] = []
    return record, _spent.set(record)


def done_spending(token: contextvars.Token[list[float] | None]) -> None:
    """Close the record ``spending`` opened."""
    _spent.reset(token)

log = logging.getLogger(__name__)


def prompt_text(payload: Any) -> str:
    """The question a payload asks: the text itself, or the last user turn of a conversation / request dict."""
    if isinstance(payload, str):
        return payload
    if isinstance(payload, Mapping):
        payload = payload.get("messages", [])
    if isinstance(payload, list):
        return last_user_text([m for m in payload if isinstance(m, dict)])
    return str(payload)


def answer_text(prediction: Prediction) -> str:
    output = prediction.output
    return output if isinstance(output, str) else str(output)


class Signal(ABC):
    """Scores an answer in [0, 1] (higher: more likely right), or None when it cannot judge."""

    #: what trace details and stats call this signal
    name: str = "signal"

    @abstractmethod
    def score(self, payload: Any, prediction: Prediction) -> float | None:
        """The score of ``prediction`` as the answer to ``payload``."""

    def to_config(self) -> dict[str, Any]:
        raise NotImplementedError(f"{type(self).__name__} has no config form (build it in code)")

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class LogprobConfidence(Signal):
    """The confidence the tier derived from token logprobs (``OpenAITier(confidence="mean"|"min"|"first")``);
    None when the server returned no logprobs."""

    name = "logprob"

    def score(self, payload: Any, prediction: Prediction) -> float | None:
        return prediction.confidence

    def to_config(self) -> dict[str, Any]:
        return {"kind": "logprob"}


class Verifier(Signal):
    """A user function ``verify(prompt, answer) -> float`` in [0, 1] (a reward model, unit tests, a checker).

    A raising or non-finite verifier gives no score (the answer is not accepted) and logs a warning: a broken
    verifier costs money (escalation), never a wrong accepted answer.
    """

    def __init__(self, verify: Callable[[str, str], float], name: str = "verifier",
                 source: str | None = None) -> None:
        if not callable(verify):
            raise ConfigError("policy.signal.verify", f"must be callable, got {verify!r}")
        self.verify = verify
        self.name = name
        self.source = source  # "package.module:function" when built from a config

    def to_config(self) -> dict[str, Any]:
        if self.source is None:
            return super().to_config()
        return {"kind": "verifier", "function": self.source, "name": self.name}

    def score(self, payload: Any, prediction: Prediction) -> float | None:
        try:
            value = float(self.verify(prompt_text(payload), answer_text(prediction)))
        except Exception as exc:  # the user's function: any failure means "cannot judge"
            log.warning("verifier %s raised %s: %s; escalating", self.name, type(exc).__name__, exc)
            return None
        return min(1.0, max(0.0, value)) if math.isfinite(value) else None

    def __repr__(self) -> str:
        return f"Verifier({self.name!r})"


class AllOf(Signal):
    """The lowest score of several signals (None if any gives none): accept only when every one agrees.
    ``last_decider`` is not kept; ``VerifiedCascade`` reports the weakest signal by name via ``weakest``."""

    def __init__(self, signals: Sequence[Signal]) -> None:
        if not signals:
            raise ConfigError("policy.signal.signals", "must list at least one signal")
        self.signals = tuple(signals)
        self.name = "all_of(" + ",".join(s.name for s in self.signals) + ")"

    def weakest(self, payload: Any, prediction: Prediction) -> tuple[Signal, float | None]:
        worst: tuple[Signal, float | None] | None = None
        for signal in self.signals:
            value = signal.score(payload, prediction)
            if value is None:
                return signal, None
            if worst is None or (worst[1] is not None and value < worst[1]):
                worst = (signal, value)
        assert worst is not None
        return worst

    def score(self, payload: Any, prediction: Prediction) -> float | None:
        return self.weakest(payload, prediction)[1]

    def to_config(self) -> dict[str, Any]:
        return {"kind": "all_of", "signals": [s.to_config() for s in self.signals]}

    def __repr__(self) -> str:
        return f"AllOf({list(self.signals)!r})"
