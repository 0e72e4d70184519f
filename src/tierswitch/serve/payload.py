"""Until the core measures chat-request dicts itself: an estimator that measures a ``{"messages": [...], ...}``
payload by its conversation (which the estimator knows), and passes everything else through unchanged.

The payload the tiers get and the cache key digests are the whole dict; only the features are taken from the
messages. When ``Estimator.features`` accepts the dict shape (CONTRACTS: LLM payloads), this wrapper is a no-op
and can go.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tierswitch.estimator.base import Estimator
from tierswitch.types import Features

__all__ = ["ChatPayloads"]


def _measured(x: Any) -> Any:
    if isinstance(x, Mapping) and isinstance(x.get("messages"), list) and not {"text", "image", "tabular"} & set(x):
        return x["messages"]
    return x


class ChatPayloads(Estimator):
    """``inner`` with chat-request dicts measured by their messages."""

    def __init__(self, inner: Estimator) -> None:
        self.inner = inner
        self.probe = inner.probe
        self.uncertainty = inner.uncertainty

    def features(self, x: Any, modality: str | None = None) -> Features:
        return self.inner.features(_measured(x), modality)

    def score_features(self, features: Features, x: Any) -> float:
        return self.inner.score_features(features, _measured(x))

    def score_many(self, xs: Sequence[Any], probes: Any = None) -> np.ndarray:
        return self.inner.score_many([_measured(x) for x in xs], probes)

    def fit(self, xs: Sequence[Any], y: Any) -> Estimator:
        self.inner.fit([_measured(x) for x in xs], y)
        return self

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
