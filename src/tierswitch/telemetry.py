"""Decision logs: one JSON line per request, for audits, tuning and offline policy evaluation.

Attach with ``router.add_hook(DecisionLog(path))``. A line holds what a later analysis needs and nothing that
identifies the payload beyond its digest: request id, digest, modality, length features, score, capable tiers, the
decided tier with its reason and propensity, the tier that answered, cost, latency, whether it was cached, each
called tier's output and confidence, and the request's JSON-serialisable ``meta``.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np

from tierswitch.types import DecisionRecord

__all__ = ["DecisionLog", "read_decision_log", "record_to_dict"]


def _plain(value: Any) -> Any:
    """JSON-safe version of an output or meta value (numpy scalars to Python, non-finite floats to None)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return _plain(value.item())
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        # numeric arrays as nested lists (lossless, unlike repr, which numpy truncates past 1,000 elements)
        return _plain(value.tolist())
    return repr(value)


def record_to_dict(record: DecisionRecord) -> dict[str, Any]:
    """The plain-data form of a decision record written to the log."""
    features = record.features
    return {
        "request_id": record.request_id,
        "digest": record.request.digest,
        "modality": record.request.modality,
        "length": features.length if features else None,
        "chars": features.chars if features else None,
        "uncertainty": features.uncertainty if features else None,
        "score": record.score,
        "capable": list(record.capable),
        "decided_tier": record.decided_tier,
        "reason": record.reason,
        "propensity": record.propensity,
        "tier": record.tier,
        "cost": record.cost,
        "latency_s": record.latency_s,
        "cached": record.cached,
        "predictions": {
            name: {"output": _plain(p.output), "confidence": p.confidence, "cost": p.cost, "version": p.tier_version}
            for name, p in record.predictions.items()
        },
        "meta": _plain(dict(record.meta)),
    }


class DecisionLog:
    """A decision hook that appends one JSON line per request to ``path`` (thread-safe, line-buffered).

    The file opens on the first record, not in the constructor; ``close()`` flushes and closes it.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._file: IO[str] | None = None
        self._lock = threading.Lock()
        self.written = 0

    def __call__(self, record: DecisionRecord) -> None:
        line = json.dumps(record_to_dict(record), separators=(",", ":"))
        with self._lock:
            if self._file is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._file = self.path.open("a", encoding="utf-8", buffering=1)
            self._file.write(line + "\n")
            self.written += 1

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def __enter__(self) -> DecisionLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_decision_log(path: str | Path) -> Iterator[dict[str, Any]]:
    """Iterate the records of a decision log (skipping a torn last line left by a crash)."""
    with Path(path).open(encoding="utf-8") as handle:
        for line in handle:
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue
