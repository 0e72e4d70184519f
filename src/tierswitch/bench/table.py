"""Load a replay table (CSV or JSONL) as arrays: inputs, per-tier outcomes, costs and latencies.

Rows with a missing outcome or cost are skipped and listed in ``ReplayData.skipped`` (never scored as wrong);
a value that is present but not an outcome (``"maybe"``, ``1.5``) is a ``ConfigError`` naming the row and field.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tierswitch.bench.spec import CostSpec, ReplaySpec
from tierswitch.errors import ConfigError
from tierswitch.estimator.features import approx_tokens
from tierswitch.validation import describe

__all__ = ["ReplayData", "SkippedRow", "load_replay", "parse_outcome"]

_MISSING = {"", "na", "n/a", "nan", "none", "null"}
_TRUE = {"true", "t", "yes"}
_FALSE = {"false", "f", "no"}


class _Missing(Exception):
    """A value is absent: the row is skipped and reported."""


@dataclass(frozen=True)
class SkippedRow:
    """A row left out of scoring, and why."""

    id: str
    reason: str


@dataclass
class ReplayData:
    """Recorded outcomes of every tier on the same inputs; tiers cheapest first.

    ``inputs`` are what the router receives: the input column's value, or ``{"text": value, **numeric}`` when the
    spec names numeric columns. ``outcomes`` and ``costs`` have shape ``(n, tiers)``; ``latencies`` too, or None
    when no tier records latency (NaN where one tier does not).
    """

    tiers: tuple[str, ...]
    ids: list[str]
    inputs: list[Any]
    outcomes: np.ndarray
    costs: np.ndarray
    latencies: np.ndarray | None = None
    confidences: np.ndarray | None = None
    skipped: list[SkippedRow] = field(default_factory=list)
    excluded: int = 0
    source: str = ""

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, rows: np.ndarray) -> ReplayData:
        """The rows at positions ``rows`` (for train/test splits)."""
        rows = np.asarray(rows, dtype=np.int64)
        pick = (lambda a: None if a is None else a[rows])  # noqa: E731
        return ReplayData(self.tiers, [self.ids[i] for i in rows], [self.inputs[i] for i in rows],
                          self.outcomes[rows], self.costs[rows], pick(self.latencies), pick(self.confidences),
                          [], 0, self.source)


def parse_outcome(value: Any, field: str) -> float:
    """bool, "True"/"False", 0/1 or a score in [0, 1] -> float; ``_Missing`` for an empty value."""
    if value is None:
        raise _Missing
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        number = float(value)
    else:
        text = str(value).strip().lower()
        if text in _MISSING:
            raise _Missing
        if text in _TRUE:
            return 1.0
        if text in _FALSE:
            return 0.0
        try:
            number = float(text)
        except ValueError:
            raise ConfigError(field, f"{describe(value)} is not an outcome; use True/False, 0/1 or a score in "
                                     f"[0, 1]") from None
    if math.isnan(number):
        raise _Missing
    if not 0.0 <= number <= 1.0:
        raise ConfigError(field, f"{describe(value)} is not an outcome; scores must be within [0, 1]")
    return number


def _number(value: Any, field: str) -> float:
    if value is None or (isinstance(value, str) and value.strip().lower() in _MISSING):
        raise _Missing
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(field, f"{describe(value)} is not a number") from None
    if math.isnan(number):
        raise _Missing
    if not math.isfinite(number) or number < 0:
        raise ConfigError(field, f"{describe(value)} must be a finite number >= 0")
    return number


def _cost(row: Mapping[str, Any], cost: CostSpec, field: str) -> float:
    if cost.column:
        return _number(row.get(cost.column), f"{field}.column ({cost.column!r})")
    total = cost.per_call
    if cost.tokens:
        total += cost.per_token * _number(row.get(cost.tokens), f"{field}.tokens ({cost.tokens!r})")
    for column in cost.text:
        text = row.get(column)
        total += cost.per_token * approx_tokens(len(text) if isinstance(text, str) else 0)
    return total


def _rows(spec: ReplaySpec) -> Iterator[tuple[int, Mapping[str, Any]]]:
    try:
        with open(spec.data, encoding="utf-8", newline="") as fh:
            if spec.format == "csv":
                reader = csv.DictReader(fh)  # a real CSV parser: fields may hold newlines
                yield from enumerate(reader, start=1)
            else:
                for number, line in enumerate(fh, start=1):
                    if line.strip():
                        try:
                            row = json.loads(line)
                        except json.JSONDecodeError as exc:
                            raise ConfigError("data", f"{spec.data} line {number} is not JSON: {exc}") from exc
                        if not isinstance(row, dict):
                            raise ConfigError("data", f"{spec.data} line {number} is not a JSON object")
                        yield number, row
    except OSError as exc:
        raise ConfigError("data", f"cannot read {spec.data}: {exc}") from exc


def _excluded_inputs(spec: ReplaySpec) -> set[str]:
    if spec.exclude_path is None:
        return set()
    try:
        lines = spec.exclude_path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError("exclude.path", f"cannot read {spec.exclude_path}: {exc}") from exc
    if spec.exclude_key is None:
        return {line for line in lines if line}
    out = set()
    for number, line in enumerate(lines, start=1):
        if line.strip():
            try:
                out.add(str(json.loads(line)[spec.exclude_key]))
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise ConfigError("exclude.key", f"{spec.exclude_path} line {number}: no "
                                                 f"{describe(spec.exclude_key)}") from exc
    return out


def load_replay(spec: ReplaySpec) -> ReplayData:
    """Read the spec's table. Raises ``ConfigError`` for a missing column or a malformed value."""
    excluded_inputs = _excluded_inputs(spec)
    ids: list[str] = []
    inputs: list[Any] = []
    outcomes, costs, latencies, confidences = [], [], [], []
    skipped: list[SkippedRow] = []
    excluded = 0
    wanted = [spec.input] + ([spec.id] if spec.id else []) + list(spec.numeric)
    for t in spec.tiers:
        wanted += [t.outcome] + t.cost.columns() + [c for c in (t.latency, t.confidence) if c]
    checked = False
    for number, row in _rows(spec):
        if not checked and spec.format == "csv":
            missing = [c for c in wanted if c not in row]
            if missing:
                raise ConfigError(_field_of(spec, missing[0]), f"column {describe(missing[0])} is not in {spec.data}; "
                                  f"columns: {sorted(row)[:12]}")
            checked = True
        row_id = str(row.get(spec.id)) if spec.id else str(number)
        text = row.get(spec.input)
        if text is None or text == "":
            skipped.append(SkippedRow(row_id, f"input column {spec.input!r} is empty"))
            continue
        if isinstance(text, str) and text in excluded_inputs:
            excluded += 1
            continue
        try:
            outs = [parse_outcome(row.get(t.outcome), f"tiers[{i}].outcome (row {row_id})")
                    for i, t in enumerate(spec.tiers)]
            cost = [_cost(row, t.cost, f"tiers[{i}].cost (row {row_id})") for i, t in enumerate(spec.tiers)]
            numeric = {n: _number(row.get(n), f"numeric (row {row_id}, column {n!r})") for n in spec.numeric}
        except _Missing:
            absent = [t.outcome for t in spec.tiers if _is_missing(row.get(t.outcome))]
            what = f"missing outcome in {absent}" if absent else "missing cost or numeric value"
            skipped.append(SkippedRow(row_id, what))
            continue
        ids.append(row_id)
        inputs.append({"text": text, **numeric} if spec.numeric else text)
        outcomes.append(outs)
        costs.append(cost)
        latencies.append([_optional(row.get(t.latency)) if t.latency else math.nan for t in spec.tiers])
        confidences.append([_optional(row.get(t.confidence)) if t.confidence else math.nan for t in spec.tiers])
    if not ids:
        raise ConfigError("data", f"no usable rows in {spec.data} ({len(skipped)} skipped, {excluded} excluded)")
    mean_costs = np.asarray(costs, dtype=np.float64).mean(axis=0)
    if np.any(np.diff(mean_costs) < 0):
        listed = ", ".join(f"{t.name} {c:.6g}" for t, c in zip(spec.tiers, mean_costs))
        raise ConfigError("tiers", f"must be listed cheapest first; mean costs per request are {listed}")
    lat = np.asarray(latencies, dtype=np.float64)
    conf = np.asarray(confidences, dtype=np.float64)
    return ReplayData(
        spec.tier_names, ids, inputs, np.asarray(outcomes, dtype=np.float64), np.asarray(costs, dtype=np.float64),
        lat if any(t.latency for t in spec.tiers) else None, conf if any(t.confidence for t in spec.tiers) else None,
        skipped, excluded, str(spec.data),
    )


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    return isinstance(value, str) and value.strip().lower() in _MISSING


def _optional(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _field_of(spec: ReplaySpec, column: str) -> str:
    if column == spec.input:
        return "input"
    if column == spec.id:
        return "id"
    if column in spec.numeric:
        return "numeric"
    for i, t in enumerate(spec.tiers):
        if column == t.outcome:
            return f"tiers[{i}].outcome"
        if column in t.cost.columns():
            return f"tiers[{i}].cost"
        if column in (t.latency, t.confidence):
            return f"tiers[{i}].{'latency' if column == t.latency else 'confidence'}"
    return "data"
