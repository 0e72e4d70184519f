"""LLM-as-teacher for open generation: keep full-tier answers, export them as chat fine-tuning JSONL.

``ChatSamples(tier="full", path="samples.jsonl")`` is a router hook: every fresh (not cached) answer of ``tier`` is
kept with the conversation that asked it, its usage and the tier version, in a bounded in-memory buffer and,
when ``path`` is given, appended to a JSONL file (one sample a line). ``export_jsonl`` (and the CLI
``tierswitch distill export SAMPLES --out train.jsonl``) turns samples into the chat fine-tuning format::

    {"messages": [{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}],
     "metadata": {"tier": "full", "tier_version": "gpt-4o", "usage": {"prompt_tokens": 31, "completion_tokens": 57}}}

(``--messages-only`` drops ``metadata`` for services that refuse unknown keys.) A user fine-tunes a student offline
on that file and promotes it through the existing gate. Closed-label tasks need none of this: an ``OpenAITier``
with ``labels=`` returns the label as its output, which feeds the distiller like any classifier's.
"""

from __future__ import annotations

import argparse
import json
import threading
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from tierswitch.errors import ConfigError, DistillError, InvalidInput
from tierswitch.tiers.chat import normalize
from tierswitch.types import DecisionRecord
from tierswitch.validation import positive

__all__ = ["ChatSamples", "export_jsonl", "main", "read_samples", "to_finetune"]


def _sample(record: DecisionRecord, tier: str) -> dict[str, Any] | None:
    prediction = record.predictions.get(tier)
    if prediction is None or record.cached or not isinstance(prediction.output, str):
        return None
    try:
        messages, params = normalize(record.request.payload)
    except InvalidInput:
        return None
    usage = prediction.usage
    return {"digest": record.request.digest, "tier": tier, "tier_version": prediction.tier_version,
            "messages": messages, "params": params, "answer": prediction.output,
            "usage": None if usage is None else {"prompt_tokens": usage.prompt_tokens,
                                                 "completion_tokens": usage.completion_tokens}}


class ChatSamples:
    """A router hook keeping the last ``max_samples`` fresh answers of ``tier`` (and appending each to ``path``).
    Never raises into the request: a failing write is counted in ``write_errors``."""

    def __init__(self, tier: str, *, max_samples: int = 10_000, path: str | Path | None = None) -> None:
        if not isinstance(tier, str) or not tier:
            raise ConfigError("distill.tier", f"must name the teacher tier, got {tier!r}")
        positive("distill.max_samples", max_samples, integer=True)
        self.tier = tier
        self.path = Path(path) if path is not None else None
        self.samples: deque[dict[str, Any]] = deque(maxlen=max_samples)
        self.write_errors = 0
        self._lock = threading.Lock()
        self._fh: IO[str] | None = None

    def __call__(self, record: DecisionRecord) -> None:
        sample = _sample(record, self.tier)
        if sample is None:
            return
        with self._lock:
            self.samples.append(sample)
            if self.path is not None:
                try:
                    if self._fh is None:
                        self._fh = self.path.open("a", encoding="utf-8")
                    self._fh.write(json.dumps(sample, ensure_ascii=False) + "\n")
                    self._fh.flush()
                except OSError:
                    self.write_errors += 1

    def close(self) -> None:
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None

    def __len__(self) -> int:
        return len(self.samples)


def read_samples(path: str | Path) -> Iterator[dict[str, Any]]:
    """The samples a ``ChatSamples`` hook appended to ``path`` (a bad line raises ``DistillError`` naming it)."""
    try:
        with open(path, encoding="utf-8") as fh:
            for number, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    sample = json.loads(line)
                except ValueError as exc:
                    raise DistillError(f"{path} line {number} is not JSON ({exc})") from exc
                if not isinstance(sample, dict) or not isinstance(sample.get("messages"), list) \
                        or not isinstance(sample.get("answer"), str):
                    raise DistillError(f"{path} line {number} is not a chat sample (needs messages and answer)")
                yield sample
    except OSError as exc:
        raise DistillError(f"cannot read samples from {path}: {exc}") from exc


def to_finetune(sample: dict[str, Any], metadata: bool = True) -> dict[str, Any]:
    """One sample in the chat fine-tuning format: the conversation plus the teacher's answer as the last turn."""
    out: dict[str, Any] = {"messages": [*sample["messages"], {"role": "assistant", "content": sample["answer"]}]}
    if metadata:
        out["metadata"] = {"tier": sample.get("tier"), "tier_version": sample.get("tier_version"),
                           "usage": sample.get("usage")}
    return out


def export_jsonl(samples: Iterable[dict[str, Any]], out: str | Path, *, tier: str | None = None,
                 tier_version: str | None = None, metadata: bool = True, limit: int | None = None) -> int:
    """Write ``samples`` (filtered by tier/version, deduplicated by digest, the newest answer kept) to ``out``;
    returns the number of lines written."""
    by_digest: dict[str, dict[str, Any]] = {}
    for sample in samples:
        if (tier is not None and sample.get("tier") != tier) or (
                tier_version is not None and sample.get("tier_version") != tier_version):
            continue
        by_digest[str(sample.get("digest", id(sample)))] = sample
    rows = list(by_digest.values())[:limit] if limit is not None else list(by_digest.values())
    with open(out, "w", encoding="utf-8") as fh:
        for sample in rows:
            fh.write(json.dumps(to_finetune(sample, metadata), ensure_ascii=False) + "\n")
    return len(rows)


def main(argv: Sequence[str] | None = None) -> int:
    """``tierswitch distill export SAMPLES.jsonl --out train.jsonl [--tier T] [--tier-version V]``."""
    parser = argparse.ArgumentParser(prog="tierswitch distill",
                                     description="export full-tier chat samples as fine-tuning JSONL")
    sub = parser.add_subparsers(dest="command", required=True)
    export = sub.add_parser("export", help="samples (from a ChatSamples hook) -> chat fine-tuning JSONL")
    export.add_argument("samples", help="the JSONL file a ChatSamples(path=...) hook wrote")
    export.add_argument("--out", required=True, help="the fine-tuning JSONL to write")
    export.add_argument("--tier", help="only this teacher tier")
    export.add_argument("--tier-version", help="only answers of this tier version")
    export.add_argument("--limit", type=int, help="at most this many lines")
    export.add_argument("--messages-only", action="store_true", help="no metadata key (tier, version, usage)")
    args = parser.parse_args(list(argv) if argv is not None else None)
    written = export_jsonl(read_samples(args.samples), args.out, tier=args.tier, tier_version=args.tier_version,
                           metadata=not args.messages_only, limit=args.limit)
    print(f"wrote {written} samples to {args.out}")
    return 0
