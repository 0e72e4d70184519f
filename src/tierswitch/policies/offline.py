"""Evaluate a new policy offline from decision logs that recorded propensities (no model is re-run).

The estimators are inverse propensity scoring (IPS) and self-normalised IPS (SNIPS). For each logged request the
new policy's probability of the logged tier, divided by the logging policy's propensity, weights the logged
outcome; the weighted mean estimates what the new policy would have got. IPS is unbiased when every tier the new
policy may choose had a non-zero logged propensity; SNIPS trades a little bias for much less variance. Both come
with a standard error and a normal 95% interval (also valid for adaptively collected logs such as a bandit's,
as long as propensities stay away from 0: give the logger an exploration floor).

Rows come from an ``OutcomeLog`` (a router decision hook kept in memory, with quality labels sent by ``feedback``;
saved as JSON lines), or from the router's audit log (``tierswitch.telemetry.DecisionLog``) through
``rows_from_decision_log`` with the labels joined by request id. Payloads are not kept unless asked
(``keep_payload=True``), so policies that read the payload (the learned policy) need logs that kept it.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tierswitch.policies.base import Policy
from tierswitch.tiers.base import Tier
from tierswitch.types import DecisionRecord, Features, Request, RoutingContext
from tierswitch.validation import describe

__all__ = ["Estimate", "LoggedDecision", "OutcomeLog", "evaluate", "rows_from_decision_log"]

_Z = 1.959963984540054


@dataclass
class LoggedDecision:
    """One logged request: its context, the tier that served it, that choice's propensity, and the outcome."""

    request_id: int
    digest: str
    modality: str
    features: dict[str, Any]
    score: float
    capable: list[str]
    tier: str
    propensity: float
    cost: float
    quality: float | None = None
    payload: Any = None

    def context(self, tiers: Mapping[str, Tier] | None = None) -> RoutingContext:
        """The routing context a policy saw (payload only when it was kept)."""
        features = Features(**self.features)
        request = Request(self.payload, self.modality, self.digest)
        return RoutingContext(request, features, self.score, tuple(self.capable), tiers or {})


class OutcomeLog:
    """Collects ``LoggedDecision`` rows from router records (a decision hook); ``feedback(request_id, quality)``
    labels them.

    Cache hits are skipped (no policy decided them). Thread-safe; bounded by ``max_records`` (oldest dropped).
    """

    def __init__(self, *, keep_payload: bool = False, max_records: int = 1_000_000) -> None:
        self.keep_payload = keep_payload
        self.max_records = max_records
        self._lock = threading.Lock()
        self._rows: dict[int, LoggedDecision] = {}

    def __call__(self, record: DecisionRecord) -> None:
        self.observe(record)

    def observe(self, record: DecisionRecord) -> None:
        if record.cached or record.features is None or record.score is None:
            return
        row = LoggedDecision(
            record.request_id, record.request.digest, record.request.modality, asdict(record.features),
            float(record.score), list(record.capable), record.tier, float(record.propensity), float(record.cost),
            payload=record.request.payload if self.keep_payload else None,
        )
        with self._lock:
            self._rows[record.request_id] = row
            while len(self._rows) > self.max_records:
                self._rows.pop(next(iter(self._rows)))

    def feedback(self, request_id: int, quality: float) -> bool:
        """Attach a quality label (e.g. 1.0 right, 0.0 wrong) to a logged request; False when unknown."""
        quality = float(quality)
        if not math.isfinite(quality):  # one NaN label would make every quality and reward estimate NaN
            raise ValueError(f"feedback: the quality must be finite, got {describe(quality)}")
        with self._lock:
            row = self._rows.get(request_id)
            if row is None:
                return False
            row.quality = quality
            return True

    def rows(self) -> list[LoggedDecision]:
        with self._lock:
            return list(self._rows.values())

    def save(self, path: str | Path) -> None:
        """Write JSON lines (one row each); written to a temporary file first, so a crash leaves no half file."""
        path = Path(path)
        tmp = path.with_suffix(path.suffix + ".tmp")
        with tmp.open("w", encoding="utf-8") as out:
            for row in self.rows():
                out.write(json.dumps(asdict(row)) + "\n")
        tmp.replace(path)

    @staticmethod
    def load(path: str | Path) -> list[LoggedDecision]:
        """Read rows written by ``save``; a malformed line raises ``ValueError`` naming its line number."""
        rows = []
        with Path(path).open(encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                try:
                    rows.append(LoggedDecision(**json.loads(line)))
                except (ValueError, TypeError) as exc:
                    raise ValueError(f"{path}:{number}: not a decision log row ({exc})") from exc
        return rows


def rows_from_decision_log(
    records: str | Path | Iterable[Mapping[str, Any]], labels: Mapping[int, float] | None = None
) -> list[LoggedDecision]:
    """Rows from the router's audit log: a ``tierswitch.telemetry.DecisionLog`` JSON-lines file (or its records as
    dicts). ``labels`` maps request ids to quality; cache hits and records without a score are skipped."""
    if isinstance(records, (str, Path)):
        from tierswitch.telemetry import read_decision_log

        records = read_decision_log(records)
    rows = []
    for rec in records:
        if rec.get("cached") or rec.get("score") is None or rec.get("length") is None:
            continue
        modality = rec["modality"]
        length = int(rec["length"])
        features = {"modality": modality, "length": length, "chars": int(rec.get("chars") or 0),
                    "tokens": length if modality == "text" else 0, "pixels": 0, "elements": 0, "turns": 0,
                    "uncertainty": rec.get("uncertainty")}
        quality = labels.get(rec["request_id"]) if labels is not None else None
        rows.append(LoggedDecision(int(rec["request_id"]), rec["digest"], modality, features, float(rec["score"]),
                                   list(rec["capable"]), rec["tier"], float(rec["propensity"]), float(rec["cost"]),
                                   None if quality is None else float(quality)))
    return rows


@dataclass(frozen=True)
class Estimate:
    """An off-policy estimate with its standard error and 95% interval; ``n`` rows used, ``matched`` of them the
    new policy could have chosen; ``effective_n`` is Kish's effective sample size of the weights."""

    value: float
    se: float
    low: float
    high: float
    n: int
    matched: int
    effective_n: float


def _target_probability(policy: Policy, ctx: RoutingContext, tier: str) -> float:
    """The new policy's probability of ``tier`` here: ``probabilities(ctx)`` when it has one, else its decision."""
    probabilities = getattr(policy, "probabilities", None)
    if probabilities is not None:
        return float(probabilities(ctx).get(tier, 0.0))
    decision = policy.decide(ctx)
    chosen = decision.tier if decision.tier is not None else (ctx.capable[-1] if ctx.capable else None)
    return 1.0 if chosen == tier else 0.0


def _estimates(w: np.ndarray, y: np.ndarray, z: float) -> dict[str, Estimate]:
    n = len(w)
    matched = int((w > 0).sum())
    ess = float(w.sum() ** 2 / (w * w).sum()) if (w > 0).any() else 0.0
    v = w * y
    ips = float(v.mean())
    ips_se = float(v.std(ddof=1) / math.sqrt(n)) if n > 1 else math.inf
    total = float(w.sum())
    if total > 0:
        snips = float(v.sum() / total)
        snips_se = float(math.sqrt(((w * (y - snips)) ** 2).sum()) / total)  # delta method
    else:
        snips, snips_se = math.nan, math.inf
    return {
        "ips": Estimate(ips, ips_se, ips - z * ips_se, ips + z * ips_se, n, matched, ess),
        "snips": Estimate(snips, snips_se, snips - z * snips_se, snips + z * snips_se, n, matched, ess),
    }


def evaluate(
    policy: Policy,
    rows: Iterable[LoggedDecision],
    *,
    lam: float = 0.0,
    tiers: Mapping[str, Tier] | None = None,
    z: float = _Z,
) -> dict[str, dict[str, Estimate]]:
    """Estimate ``policy``'s mean cost, quality and reward (quality - lam * cost) from logged rows.

    Returns ``{"cost": {"ips": Estimate, "snips": Estimate}, "quality": {...}, "reward": {...}}``. Quality and
    reward use only the rows that have a quality label. ``tiers`` gives cost-aware policies their cost models.
    Deterministic policies are asked ``decide``; stateful ones (bandits, budgets) change as they are asked, so
    evaluate a fresh copy, or give the policy a ``probabilities(ctx)`` method (the bandit has one).
    """
    rows = list(rows)
    if not rows:
        raise ValueError("evaluate: no logged rows; log decisions with OutcomeLog first")
    weights, costs, quality, labelled = [], [], [], []
    for row in rows:
        if not 0.0 < row.propensity <= 1.0:
            raise ValueError(f"evaluate: request {row.request_id} has propensity {describe(row.propensity)}; it "
                             f"must be "
                             "in (0, 1] (log with a policy that records propensities)")
        weights.append(_target_probability(policy, row.context(tiers), row.tier) / row.propensity)
        costs.append(row.cost)
        labelled.append(row.quality is not None)
        quality.append(row.quality if row.quality is not None else 0.0)
    w, c = np.array(weights), np.array(costs)
    mask, q = np.array(labelled), np.array(quality)
    out = {"cost": _estimates(w, c, z)}
    if mask.sum() >= 2:
        out["quality"] = _estimates(w[mask], q[mask], z)
        out["reward"] = _estimates(w[mask], q[mask] - lam * c[mask], z)
    return out

