"""Shared helpers for the LLM-tier tests: recorded GSM8K servers on loopback ports (real HTTP, latency scale 0)."""

from __future__ import annotations

from tierswitch.testing import RecordedServer, load_gsm8k
from tierswitch.tiers.openai import OpenAITier, TokenPrices

TABLE = load_gsm8k()
QUESTION = TABLE.rows[0].prompt
MIXTRAL_PRICE = TokenPrices(0.24, 0.24)  # $ per million tokens, the replay spec's prices
GPT4_PRICE = TokenPrices(24.7, 24.7)


def tier(server: RecordedServer, model: str, name: str | None = None, **kwargs) -> OpenAITier:
    kwargs.setdefault("params", {"temperature": 0})
    kwargs.setdefault("cost", MIXTRAL_PRICE if model == "mixtral" else GPT4_PRICE)
    kwargs.setdefault("sleep", lambda s: None)
    return OpenAITier(name or model, server.base_url, model, **kwargs)
