"""``SelfVerify``: the cheap model judges its own answer (AutoMix-style self-verification).

The tier is asked a yes/no question about (question, answer) at temperature 0. With logprobs, the score is the
probability of "yes" (``confidence`` of a "yes" answer, 1 - confidence of a "no"); without, 1.0 for yes and 0.0 for
no; anything else gives no score. The verification call is a real tier call: under ``VerifiedCascade`` its cost is
added to the request's cost (``Routed.cost``); on the async path it runs synchronously inside ``accept``.
"""

from __future__ import annotations

import logging
from typing import Any

from tierswitch.errors import TierswitchError
from tierswitch.policies.verify import Signal, answer_text, prompt_text, spend
from tierswitch.tiers.base import Tier
from tierswitch.types import Prediction

__all__ = ["DEFAULT_TEMPLATE", "SelfVerify"]

log = logging.getLogger(__name__)

DEFAULT_TEMPLATE = ("Question:\n{question}\n\nProposed answer:\n{answer}\n\nIs the proposed answer correct? "
                    "Reply with one word: Yes or No.")


class SelfVerify(Signal):
    """Ask ``tier`` (usually the one that answered) whether the answer is right; see the module docstring."""

    name = "self_verify"

    def __init__(self, tier: Tier, template: str = DEFAULT_TEMPLATE, max_tokens: int = 2) -> None:
        self.tier = tier
        self.template = template
        self.max_tokens = max_tokens
        self.calls = 0

    def score(self, payload: Any, prediction: Prediction) -> float | None:
        question = self.template.format(question=prompt_text(payload), answer=answer_text(prediction))
        request = {"messages": [{"role": "user", "content": question}], "temperature": 0,
                   "max_tokens": self.max_tokens}
        self.calls += 1
        try:
            verdict = self.tier.predict_one(request)
        except TierswitchError as exc:
            log.warning("self-verification by %s failed (%s); escalating", self.tier.name, exc)
            return None
        spend(verdict.cost)
        word = answer_text(verdict).strip().strip(".!").lower()
        if word.startswith("yes"):
            return verdict.confidence if verdict.confidence is not None else 1.0
        if word.startswith("no"):
            return 1.0 - verdict.confidence if verdict.confidence is not None else 0.0
        return None

    def __repr__(self) -> str:
        return f"SelfVerify({self.tier.name!r})"
