"""OpenAI chat-completions shapes in and out, and the ``Routed`` answer as JSON."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from tierswitch.serve.errors import ApiError
from tierswitch.types import Routed, Usage

__all__ = ["chat_payload", "chunk", "completion", "info", "routed_json", "text_of", "usage_json"]

_GATEWAY_KEYS = ("model", "stream", "stream_options", "user")


def chat_payload(body: Any) -> tuple[str, dict[str, Any], bool, bool]:
    """(model, the payload the router gets, stream?, include usage in the stream?) from a request body; 400s name
    the field at fault. The payload is the body without ``model``, ``stream``, ``stream_options`` and ``user``."""
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object", "invalid_request")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ApiError(400, "`model` is required: a tier name, a route name or tierswitch/auto (GET /v1/models)",
                       "missing_model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise ApiError(400, "`messages` must be a non-empty list of message objects", "invalid_messages")
    for i, m in enumerate(messages):
        if not isinstance(m.get("role"), str):
            raise ApiError(400, f"`messages[{i}].role` is required (system, user, assistant or tool)",
                           "invalid_messages")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise ApiError(400, "`stream` must be true or false", "invalid_request")
    options = body.get("stream_options") or {}
    include_usage = bool(options.get("include_usage")) if isinstance(options, dict) else False
    payload = {k: v for k, v in body.items() if k not in _GATEWAY_KEYS}
    return model, payload, stream, include_usage


def text_of(output: Any) -> str:
    """A tier's output as message content: text stays text, anything else is JSON."""
    if isinstance(output, str):
        return output
    return json.dumps(_plain(output))


def usage_json(usage: Usage | None) -> dict[str, int] | None:
    if usage is None:
        return None
    return {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens}


def info(routed: Routed, request_id: str, route: str) -> dict[str, Any]:
    """The ``tierswitch`` field: which tier answered, at what cost, cached or not, and why."""
    decided = next((s.detail for s in routed.trace if s.kind == "decide"), "")
    return {"request_id": request_id, "route": route, "tier": routed.tier, "tier_version": routed.tier_version,
            "cost": routed.cost, "cached": routed.cached, "score": routed.score, "reason": decided,
            "latency_ms": round(routed.latency_s * 1e3, 3),
            "tokens": None if routed.usage is None else routed.usage.total_tokens}


def completion(routed: Routed, request_id: str, route: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": f"chatcmpl-{request_id}", "object": "chat.completion", "created": int(time.time()),
        "model": routed.tier,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text_of(routed.output)},
                     "finish_reason": "stop", "logprobs": None}],
        "tierswitch": info(routed, request_id, route),
    }
    usage = usage_json(routed.usage)
    if usage is not None:
        body["usage"] = usage
    return body


def chunk(request_id: str, model: str, delta: Mapping[str, Any], finish: str | None = None,
          **extra: Any) -> dict[str, Any]:
    """One ``chat.completion.chunk`` (``extra``: usage, tierswitch on the last one)."""
    body: dict[str, Any] = {"id": f"chatcmpl-{request_id}", "object": "chat.completion.chunk",
                            "created": int(time.time()), "model": model,
                            "choices": [{"index": 0, "delta": dict(delta), "finish_reason": finish}]}
    body.update(extra)
    return body


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)


def routed_json(routed: Routed, request_id: str, route: str) -> dict[str, Any]:
    """``POST /v1/route``'s answer: the ``Routed`` fields as plain JSON."""
    return {
        "output": _plain(routed.output), "tier": routed.tier, "tier_version": routed.tier_version,
        "cost": routed.cost, "latency_s": routed.latency_s, "cached": routed.cached, "score": routed.score,
        "confidence": routed.confidence, "probs": None if routed.probs is None else routed.probs.tolist(),
        "usage": usage_json(routed.usage), "request_id": request_id, "route": route,
        "trace": [{"kind": s.kind, "tier": s.tier, "detail": s.detail, "confidence": s.confidence,
                   "latency_s": s.latency_s} for s in routed.trace],
    }
