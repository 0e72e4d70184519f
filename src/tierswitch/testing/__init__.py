"""Test and demo helpers (layer 4): a recorded-LLM server speaking the OpenAI chat-completions protocol.

``RecordedServer.gsm8k(["mixtral"])`` starts a real HTTP server on a free loopback port that answers GSM8K
questions with the real recorded Mixtral (or GPT-4) answers; see ``tierswitch.testing.recorded_llm``.
"""

from tierswitch.testing.recorded_llm import FAULTS, Faults, LatencyModel, build_app, gsm8k_app
from tierswitch.testing.server import RecordedServer
from tierswitch.testing.table import RecordedRow, RecordedTable, load_gsm8k

__all__ = ["FAULTS", "Faults", "LatencyModel", "RecordedRow", "RecordedServer", "RecordedTable", "build_app",
           "gsm8k_app", "load_gsm8k"]
