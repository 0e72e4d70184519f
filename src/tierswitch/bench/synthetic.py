"""A seeded synthetic N-tier replay table, for timing and for checks that need many rows (not for quality claims).

Each row is a short "question" built from topic words and filler; a latent difficulty (topic, number of clauses,
a few marker words) sets each tier's chance of being right, stronger tiers being right more often, so a router
has real but imperfect signal. Costs are per query (``price * tokens``), 10x apart between tiers::

    python -m tierswitch.bench.synthetic OUT.csv --rows 14000 --seed 0   # then a spec with 3 tiers (see below)
"""

from __future__ import annotations

import argparse
import csv
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["SPEC", "write_synthetic"]

_TOPICS = ("algebra", "geometry", "history", "biology", "chemistry", "law", "finance", "code", "poetry", "physics")
_HARD = ("prove", "derive", "multi-step", "exception", "nested", "compare", "estimate")
_FILLER = ("the", "a", "of", "what", "is", "how", "many", "when", "which", "does", "and", "with", "for", "in")
SPEC = """data: {data}
input: text
id: id
group: topic
tiers:
  - {{name: small, outcome: small_correct, cost: {{column: small_cost}}}}
  - {{name: mid, outcome: mid_correct, cost: {{column: mid_cost}}}}
  - {{name: large, outcome: large_correct, cost: {{column: large_cost}}}}
"""


def write_synthetic(out: str | Path, rows: int = 14_000, seed: int = 0,
                    strengths: Sequence[float] = (-0.8, 0.6, 1.6), prices: Sequence[float] = (0.1, 1.0, 10.0)) -> Path:
    """Write the table to ``out`` (CSV: id, text, topic, <tier>_correct, <tier>_cost for tiers small/mid/large)."""
    rng = np.random.default_rng(seed)
    names = ("small", "mid", "large")[: len(strengths)]
    topic_difficulty = rng.normal(0.0, 0.8, len(_TOPICS))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "text", "topic", *(f"{t}_correct" for t in names), *(f"{t}_cost" for t in names)])
        for i in range(rows):
            topic = int(rng.integers(len(_TOPICS)))
            clauses = int(rng.integers(1, 6))
            hard = rng.random(len(_HARD)) < 0.12
            words = [_TOPICS[topic]] + [str(x) for x in rng.choice(_FILLER, 4 * clauses)]
            words += [h for h, on in zip(_HARD, hard) if on]
            rng.shuffle(words)
            text = " ".join(words) + "?"
            difficulty = topic_difficulty[topic] + 0.45 * (clauses - 3) + 0.9 * hard.sum() + rng.normal(0, 0.7)
            right = [bool(rng.random() < 1 / (1 + math.exp(difficulty - s))) for s in strengths]
            tokens = math.ceil(len(text) / 4) + 8
            w.writerow([i, text, _TOPICS[topic], *right, *(f"{p * tokens / 1000:.8f}" for p in prices)])
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tierswitch.bench.synthetic")
    parser.add_argument("out")
    parser.add_argument("--rows", type=int, default=14_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    path = write_synthetic(args.out, args.rows, args.seed)
    spec = path.with_suffix(".yaml")
    spec.write_text(SPEC.format(data=path.resolve()), encoding="utf-8")
    print(f"wrote {path} and {spec}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
