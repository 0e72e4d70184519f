"""The chat-completions protocol without I/O: prices, error mapping, response and server-sent-event parsing.

``OpenAITier`` drives these from a sync (``httpx.Client``) and an async (``httpx.AsyncClient``) shell, so both
paths share one implementation of every rule.
"""

from __future__ import annotations

import email.utils
import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tierswitch.errors import (
    UpstreamProtocolError,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamUnavailable,
)
from tierswitch.tiers.llm_confidence import token_logprobs
from tierswitch.types import Usage
from tierswitch.validation import finite

__all__ = ["Completion", "StreamState", "TokenPrices", "error_for", "parse_completion", "parse_retry_after",
           "parse_usage"]


@dataclass(frozen=True, slots=True)
class TokenPrices:
    """Prices per million prompt (input) and completion (output) tokens, in the router's cost unit."""

    input_per_mtok: float = 0.0
    output_per_mtok: float = 0.0

    def __post_init__(self) -> None:
        finite("cost.input_per_mtok", self.input_per_mtok, low=0.0)
        finite("cost.output_per_mtok", self.output_per_mtok, low=0.0)

    def cost(self, usage: Usage) -> float:
        """``prompt_tokens x input price + completion_tokens x output price`` (prices are per 1e6 tokens; computed
        as tokens x per-token price, the same float operations as the replay benchmark, so costs match it exactly)."""
        per_in, per_out = self.input_per_mtok / 1e6, self.output_per_mtok / 1e6
        return usage.prompt_tokens * per_in + usage.completion_tokens * per_out


@dataclass(slots=True)
class Completion:
    """One parsed answer: its text (or tool calls), token usage (None: the server gave none) and token logprobs."""

    output: Any
    usage: Usage | None
    logprobs: list[float] = field(default_factory=list)
    finish_reason: str | None = None


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date); None when absent or bad."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _server_message(text: str) -> str:
    try:
        body = json.loads(text)
    except ValueError:
        return text.strip()[:500] or "(empty body)"
    if isinstance(body, Mapping):
        err = body.get("error")
        if isinstance(err, Mapping) and isinstance(err.get("message"), str):
            return str(err["message"])
        if isinstance(err, str):
            return err
        if isinstance(body.get("message"), str):
            return str(body["message"])
    return text.strip()[:500]


def error_for(tier: str, url: str, status: int, text: str, headers: Mapping[str, str]) -> Exception:
    """The exception a non-2xx answer becomes: 429 -> ``UpstreamRateLimited``; 5xx -> ``UpstreamUnavailable``
    (both transient, retried); any other 4xx -> ``UpstreamRejected`` carrying the server's message."""
    message = _server_message(text)
    retry_after = parse_retry_after(headers.get("retry-after"))
    if status == 429:
        return UpstreamRateLimited(f"tier {tier!r}: {url} is rate limiting (HTTP 429: {message})", retry_after)
    if status >= 500:
        return UpstreamUnavailable(f"tier {tier!r}: {url} failed with HTTP {status}: {message}", retry_after)
    return UpstreamRejected(tier, status, message, url)


def parse_usage(value: Any) -> Usage | None:
    """A ``Usage`` from the response's ``usage`` object, or None when it is absent or not two counts >= 0."""
    if not isinstance(value, Mapping):
        return None
    prompt, completion = value.get("prompt_tokens"), value.get("completion_tokens")
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in (prompt, completion)):
        return None
    return Usage(int(prompt), int(completion))  # type: ignore[arg-type]


def _message_output(tier: str, url: str, message: Any) -> Any:
    if not isinstance(message, Mapping):
        raise UpstreamProtocolError(tier, f"{url} answered a choice without a message object")
    content = message.get("content")
    if isinstance(content, str):
        return content
    if content is None and message.get("tool_calls"):
        return {"tool_calls": message["tool_calls"]}
    raise UpstreamProtocolError(tier, f"{url} answered a message whose content is {type(content).__name__}, "
                                      "not text")


def parse_completion(tier: str, url: str, text: str) -> Completion:
    """Parse a non-streaming chat-completions body. Invalid JSON, an ``error`` body, or no usable first choice raise
    ``UpstreamProtocolError`` naming the tier and URL."""
    try:
        body = json.loads(text)
    except ValueError as exc:
        raise UpstreamProtocolError(tier, f"{url} answered invalid JSON ({exc}); body starts {text[:80]!r}") from exc
    if not isinstance(body, Mapping):
        raise UpstreamProtocolError(tier, f"{url} answered JSON that is not an object")
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices:
        raise UpstreamProtocolError(tier, f"{url} answered no choices (keys: {sorted(map(str, body))[:6]})")
    choice = choices[0]
    if not isinstance(choice, Mapping):
        raise UpstreamProtocolError(tier, f"{url} answered a choice that is not an object")
    output = _message_output(tier, url, choice.get("message"))
    return Completion(output, parse_usage(body.get("usage")), token_logprobs(choice.get("logprobs")),
                      choice.get("finish_reason"))


class StreamState:
    """Accumulates a server-sent-event chat-completions stream, one line at a time.

    ``feed(line)`` returns the text delta the line carried (or None). ``finish()`` returns the complete
    ``Completion``, or raises ``UpstreamProtocolError`` when the stream ended without ``data: [DONE]``.
    """

    def __init__(self, tier: str, url: str) -> None:
        self.tier, self.url = tier, url
        self.parts: list[str] = []
        self.logprobs: list[float] = []
        self.usage: Usage | None = None
        self.finish_reason: str | None = None
        self.done = False

    def feed(self, line: str) -> str | None:
        if self.done or not line.startswith("data:"):
            return None  # blank separators, comments (": keep-alive"), event:/id: fields
        data = line[5:].strip()
        if data == "[DONE]":
            self.done = True
            return None
        try:
            chunk = json.loads(data)
        except ValueError as exc:
            raise UpstreamProtocolError(self.tier, f"{self.url} sent a stream event that is not JSON: "
                                                   f"{data[:80]!r}") from exc
        if not isinstance(chunk, Mapping):
            raise UpstreamProtocolError(self.tier, f"{self.url} sent a stream event that is not an object")
        if isinstance(chunk.get("error"), Mapping):
            raise UpstreamProtocolError(self.tier, f"{self.url} reported an error mid-stream: "
                                                   f"{chunk['error'].get('message')}")
        usage = parse_usage(chunk.get("usage"))
        if usage is not None:
            self.usage = usage
        choices = chunk.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], Mapping):
            return None  # the final usage-only chunk has choices: []
        choice = choices[0]
        if choice.get("finish_reason"):
            self.finish_reason = str(choice["finish_reason"])
        self.logprobs.extend(token_logprobs(choice.get("logprobs")))
        delta = choice.get("delta")
        text = delta.get("content") if isinstance(delta, Mapping) else None
        if isinstance(text, str) and text:
            self.parts.append(text)
            return text
        return None

    def finish(self) -> Completion:
        if not self.done:
            raise UpstreamProtocolError(self.tier, f"{self.url} ended the stream before 'data: [DONE]' (truncated "
                                                   f"after {len(self.parts)} deltas); the partial answer is dropped")
        return Completion("".join(self.parts), self.usage, self.logprobs, self.finish_reason)
