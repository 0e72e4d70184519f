"""The recorded answers the recorded-LLM server replays: GSM8K with Mixtral and GPT-4 (shipped in the package).

``load_gsm8k()`` reads ``tierswitch/data/gsm8k/responses.csv.gz`` (1,307 decontaminated questions, see its README)
with a real CSV parser; ``RecordedTable`` maps a prompt (the last user message) to each model's answer.
"""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import resources

__all__ = ["GSM8K_MODELS", "RecordedRow", "RecordedTable", "load_gsm8k"]

#: model name served -> column prefix in the shipped table
GSM8K_MODELS = {"mixtral": "mixtral", "gpt4": "gpt4"}


@dataclass(frozen=True, slots=True)
class RecordedRow:
    """One question: its prompt, and per model the recorded answer and whether it was correct."""

    prompt: str
    answers: Mapping[str, str]
    correct: Mapping[str, bool]


class RecordedTable:
    """Recorded answers by prompt text (exact match), in file order."""

    def __init__(self, rows: list[RecordedRow]) -> None:
        self.rows = rows
        self._by_prompt = {row.prompt: row for row in rows}
        self.models = tuple(rows[0].answers) if rows else ()

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[RecordedRow]:
        return iter(self.rows)

    def get(self, prompt: str) -> RecordedRow | None:
        return self._by_prompt.get(prompt)


def load_gsm8k() -> RecordedTable:
    """The shipped GSM8K table: 1,307 questions, models ``mixtral`` and ``gpt4``."""
    data = resources.files("tierswitch").joinpath("data/gsm8k/responses.csv.gz").read_bytes()
    text = gzip.decompress(data).decode("utf-8")
    rows = []
    for record in csv.DictReader(io.StringIO(text, newline="")):
        rows.append(RecordedRow(
            record["prompt"],
            {m: record[f"{c}_response"] for m, c in GSM8K_MODELS.items()},
            {m: record[f"{c}_correct"] == "True" for m, c in GSM8K_MODELS.items()},
        ))
    return RecordedTable(rows)
