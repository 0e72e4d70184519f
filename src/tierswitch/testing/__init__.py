"""Test and demo helpers (layer 4): a recorded-LLM server speaking the OpenAI chat-completions protocol.

``RecordedServer.gsm8k(["mixtral"])`` starts a real HTTP server on a free loopback port that answers GSM8K
questions with the real recorded Mixtral (or GPT-4) answers; see ``tierswitch.testing.app``. Names are
imported on first use, so ``python -m tierswitch.testing.recorded_llm`` runs the module cleanly.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["FAULTS", "Faults", "LatencyModel", "RecordedRow", "RecordedServer", "RecordedTable", "build_app",
           "gsm8k_app", "load_gsm8k"]

_WHERE = {"FAULTS": "app", "Faults": "app", "LatencyModel": "app",
          "build_app": "app", "gsm8k_app": "app", "RecordedServer": "server",
          "RecordedRow": "table", "RecordedTable": "table", "load_gsm8k": "table"}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'tierswitch.testing' has no attribute {name!r}")
    return getattr(importlib.import_module(f"tierswitch.testing.{module}"), name)
