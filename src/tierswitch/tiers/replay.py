"""``ReplayTier``: a tier that answers from recorded outcomes, so the normal ``Router`` and policies run on logs.

Each recorded input (keyed by its canonical digest, the same one the router and caches use) maps to what the real
tier did: its outcome (correctness or a score in [0, 1], returned as the prediction's output so a report can score
it), its cost, and optionally its latency and confidence. No model is called; an input that was never recorded is a
``TierFailure`` naming the tier (build the router with ``fallback=False`` so it is not hidden by a fallback).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple, Protocol

import numpy as np

from tierswitch.digest import digest_of
from tierswitch.errors import ConfigError, TierFailure
from tierswitch.tiers.base import Capabilities, CostModel, RawOutput, Tier
from tierswitch.types import Prediction

__all__ = ["Recorded", "RecordedTable", "ReplayTier"]


class RecordedTable(Protocol):
    """What ``ReplayTier.from_replay`` reads of a recorded table (``bench.table.ReplayData`` is one): inputs, tier
    names cheapest first, and per-row x per-tier arrays. A protocol, so this seam names no higher floor."""

    @property
    def inputs(self) -> Sequence[Any]: ...

    @property
    def tiers(self) -> tuple[str, ...]: ...

    @property
    def outcomes(self) -> np.ndarray: ...

    @property
    def costs(self) -> np.ndarray: ...

    @property
    def latencies(self) -> np.ndarray | None: ...

    @property
    def confidences(self) -> np.ndarray | None: ...


class Recorded(NamedTuple):
    """One recorded answer: ``outcome`` in [0, 1], ``cost`` in the tiers' unit, optional latency and confidence."""

    outcome: float
    cost: float | None = None
    latency_s: float | None = None
    confidence: float | None = None


class ReplayTier(Tier):
    """Serve recorded outcomes. ``records`` maps a key per input to a ``Recorded`` (or a bare outcome); the key is
    the input's digest (``tierswitch.digest.digest_of``) unless ``key`` says otherwise, e.g.
    ``key=lambda x: x["id"]`` for dict inputs that carry their row id. A record without a cost is priced by
    ``cost`` like any tier; a recorded cost wins."""

    def __init__(
        self,
        name: str,
        records: Mapping[str, Recorded | float | bool],
        *,
        key: Callable[[Any], str] | None = None,
        cost: CostModel | float = 0.0,
        capabilities: Capabilities | None = None,
        version: str = "replay",
    ) -> None:
        super().__init__(name, cost=cost, capabilities=capabilities, version=version)
        self.records = {k: v if isinstance(v, Recorded) else Recorded(float(v)) for k, v in records.items()}
        self.key = key if key is not None else digest_of

    @classmethod
    def from_pairs(cls, name: str, pairs: Iterable[tuple[Any, Recorded | float | bool]], *,
                   duplicates: str = "error", **kwargs: Any) -> ReplayTier:
        """Build from ``(input, record)`` pairs. The same input recorded twice with different outcomes is refused
        (``duplicates="error"``) or served as the mean outcome and cost of its copies with a warning
        (``duplicates="mean"``: the rule ``bench replay`` and ``tune`` follow, where models learn that mean)."""
        if duplicates not in ("error", "mean"):
            raise ConfigError("duplicates", f"must be 'error' or 'mean', got {duplicates!r}")
        groups: dict[str, list[Recorded]] = {}
        key_of = kwargs.get("key") or digest_of
        for x, record in pairs:
            rec = record if isinstance(record, Recorded) else Recorded(float(record))
            key = key_of(x)
            old = groups.setdefault(key, [])
            if old and old[0] != rec and duplicates == "error":
                raise ConfigError(f"tiers.{name}", f"input {_short(x)} is recorded twice with different outcomes "
                                  f"({old[0]} vs {rec}); deduplicate the replay table or pass duplicates='mean'")
            old.append(rec)
        records = {k: v[0] if len(set(v)) == 1 else _mean(v) for k, v in groups.items()}
        conflicting = sum(len(set(v)) > 1 for v in groups.values())
        if conflicting:
            import warnings

            warnings.warn(f"tier {name}: {conflicting} input(s) recorded with different outcomes; serving the mean "
                          "outcome and cost of the copies", stacklevel=2)
        return cls(name, records, **kwargs)

    @classmethod
    def from_replay(cls, data: RecordedTable, tier: str | None = None) -> list[ReplayTier] | ReplayTier:
        """One tier (``tier`` given) or every tier (cheapest first) of a ``bench.table.ReplayData``."""
        names = data.tiers if tier is None else (tier,)
        built = []
        for name in names:
            if name not in data.tiers:
                raise ConfigError("tier", f"unknown tier {name!r}; the replay has {list(data.tiers)}")
            j = data.tiers.index(name)
            pairs = []
            for i, x in enumerate(data.inputs):
                latency = None if data.latencies is None else _finite(data.latencies[i, j])
                confidence = None if data.confidences is None else _finite(data.confidences[i, j])
                pairs.append((x, Recorded(float(data.outcomes[i, j]), float(data.costs[i, j]), latency, confidence)))
            built.append(cls.from_pairs(name, pairs, duplicates="mean"))
        return built if tier is None else built[0]

    def _lookup(self, x: Any) -> Recorded:
        try:
            record = self.records.get(self.key(x))
        except (KeyError, TypeError) as exc:
            raise TierFailure(self.name, f"cannot compute the replay key of input {_short(x)}: {exc}") from exc
        if record is None:
            raise TierFailure(self.name, f"no recorded outcome for input {_short(x)}; replay only knows logged inputs")
        return record

    def _predict_raw(self, batch: Sequence[Any]) -> Sequence[RawOutput]:
        return [RawOutput(r.outcome, None, r.confidence) for r in map(self._lookup, batch)]

    def predict(self, batch: Sequence[Any], lengths: Sequence[int] | None = None) -> list[Prediction]:
        """Recorded outputs, with the recorded cost (and latency, when logged) instead of the modelled ones."""
        predictions = super().predict(batch, lengths)
        out = []
        for x, p in zip(batch, predictions):
            record = self._lookup(x)
            changes: dict[str, Any] = {}
            if record.cost is not None:
                changes["cost"] = record.cost
            if record.latency_s is not None:
                changes["latency_s"] = record.latency_s
            out.append(dataclasses.replace(p, **changes) if changes else p)
        return out

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "records": len(self.records)}


def _mean(records: list[Recorded]) -> Recorded:
    def avg(values: list[float | None]) -> float | None:
        known = [v for v in values if v is not None]
        return sum(known) / len(known) if known else None

    outcome = avg([r.outcome for r in records])
    return Recorded(outcome if outcome is not None else 0.0, avg([r.cost for r in records]),
                    avg([r.latency_s for r in records]), avg([r.confidence for r in records]))


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _short(x: Any) -> str:
    text = repr(x)
    return text if len(text) <= 60 else text[:57] + "..."
