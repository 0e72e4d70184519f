"""Chat payloads for language-model tiers: validate and normalise the three shapes the router accepts.

* a ``str``: one user turn;
* a ``list`` of message dicts (roles system/developer/user/assistant/tool; ``content`` a str or a list of
  multimodal parts: ``{"type": "text", "text": ...}``, ``{"type": "image_url", "image_url": {"url": ...}}``,
  ``{"type": "input_audio", "input_audio": {...}}``, ``{"type": "file", "file": {...}}``);
* a ``dict`` shaped like an OpenAI chat-completions request body without ``model``/``stream``
  (``{"messages": [...], "temperature": 0, ...}``).

Every problem raises ``InvalidMessages`` naming the field (``messages[2].content[0].text``), so a caller knows
which turn to fix. This module does no I/O.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from tierswitch.errors import InvalidMessages

__all__ = ["ROLES", "approx_tokens_of", "conversation_text", "last_user_text", "normalize", "parse_label",
           "validate_messages"]

ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
_PART_KEYS = {"text": "text", "image_url": "image_url", "input_audio": "input_audio", "file": "file"}
_RESERVED = {"model", "stream", "stream_options"}  # the tier sets these itself
_CHARS_PER_TOKEN = 4  # the same rule as tierswitch.estimator.features.approx_tokens


def approx_tokens_of(text: str) -> int:
    """ceil(len(text) / 4): the deterministic token approximation used for estimates (and by the recorded server)."""
    return (len(text) + _CHARS_PER_TOKEN - 1) // _CHARS_PER_TOKEN


def _part(field: str, index: int, part: Any) -> None:
    if not isinstance(part, Mapping):
        raise InvalidMessages(field, f"a content part must be a dict like {{'type': 'text', 'text': '...'}}, got "
                                     f"{type(part).__name__}", index)
    kind = part.get("type")
    if kind not in _PART_KEYS:
        raise InvalidMessages(f"{field}.type", f"unknown content part type {kind!r}; allowed: {sorted(_PART_KEYS)}",
                              index)
    value = part.get(_PART_KEYS[kind])
    if kind == "text":
        if not isinstance(value, str):
            raise InvalidMessages(f"{field}.text", f"must be a str, got {type(value).__name__}", index)
    elif kind == "image_url":
        if not isinstance(value, Mapping) or not isinstance(value.get("url"), str) or not value.get("url"):
            raise InvalidMessages(f"{field}.image_url.url", "must be a non-empty str (an https or data: URL)", index)
    elif not isinstance(value, Mapping):
        raise InvalidMessages(f"{field}.{kind}", f"must be a dict, got {type(value).__name__}", index)


def _message(i: int, message: Any) -> None:
    field = f"messages[{i}]"
    if not isinstance(message, Mapping):
        raise InvalidMessages(field, f"must be a dict like {{'role': 'user', 'content': '...'}}, got "
                                     f"{type(message).__name__}", i)
    role = message.get("role", "user")  # a turn without a role is a user turn (as the router's conversations)
    if role not in ROLES:
        raise InvalidMessages(f"{field}.role", f"must be one of {sorted(ROLES)}, got {role!r}", i)
    content = message.get("content")
    if content is None:
        if role == "assistant" and message.get("tool_calls"):
            return  # an assistant turn that only calls tools
        raise InvalidMessages(f"{field}.content", "is missing; give the turn's text (or a list of content parts)", i)
    if isinstance(content, str):
        pass
    elif isinstance(content, list):
        if not content:
            raise InvalidMessages(f"{field}.content", "is an empty list of parts; give at least one part", i)
        for j, part in enumerate(content):
            _part(f"{field}.content[{j}]", i, part)
    else:
        raise InvalidMessages(f"{field}.content", f"must be a str or a list of content parts, got "
                                                  f"{type(content).__name__}", i)
    if role == "tool" and not isinstance(message.get("tool_call_id"), str):
        raise InvalidMessages(f"{field}.tool_call_id", "a tool message needs the str id of the call it answers", i)


def validate_messages(messages: Any) -> list[dict[str, Any]]:
    """Check a list of chat messages; return it as a list of plain dicts. Raises ``InvalidMessages``."""
    if not isinstance(messages, list):
        raise InvalidMessages("messages", f"must be a list of message dicts, got {type(messages).__name__}")
    if not messages:
        raise InvalidMessages("messages", "is empty; send at least one {'role': 'user', 'content': '...'} turn")
    for i, message in enumerate(messages):
        _message(i, message)
    return [dict(m) if "role" in m else {"role": "user", **m} for m in messages]


def _params(body: Mapping[str, Any]) -> dict[str, Any]:
    params = {}
    for key, value in body.items():
        if not isinstance(key, str):
            raise InvalidMessages("request", f"keys must be str, got {key!r}")
        if key == "messages":
            continue
        if key in _RESERVED:
            raise InvalidMessages(key, "is set by the tier (its configured model; stream via astream); drop it")
        params[key] = value
    for key in ("temperature", "top_p"):
        value = params.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not math.isfinite(value) or value < 0):
            raise InvalidMessages(key, f"must be a finite number >= 0, got {value!r}")
    for key in ("max_tokens", "max_completion_tokens"):
        value = params.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
            raise InvalidMessages(key, f"must be a positive integer, got {value!r}")
    seed = params.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise InvalidMessages("seed", f"must be an integer, got {seed!r}")
    stop = params.get("stop")
    if stop is not None and not isinstance(stop, str) and not (
            isinstance(stop, list) and all(isinstance(s, str) for s in stop)):
        raise InvalidMessages("stop", f"must be a str or a list of str, got {stop!r}")
    return params


def normalize(x: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """``(messages, params)`` of a router payload (str, message list, or request-body dict)."""
    if isinstance(x, str):
        if not x:
            raise InvalidMessages("messages[0].content", "is an empty string; send at least one character", 0)
        return [{"role": "user", "content": x}], {}
    if isinstance(x, list):
        return validate_messages(x), {}
    if isinstance(x, Mapping):
        if "messages" not in x:
            raise InvalidMessages("messages", f"a request dict needs a 'messages' list; keys given: "
                                              f"{sorted(map(str, x))[:6]}")
        return validate_messages(x["messages"]), _params(x)
    raise InvalidMessages("request", f"a language-model tier takes a str, a list of chat messages or a request "
                                     f"dict, got {type(x).__name__}")


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p["text"] for p in content if isinstance(p, Mapping) and p.get("type") == "text")
    return ""


def conversation_text(messages: list[dict[str, Any]]) -> str:
    """Every message's text, one per line (non-text parts count as nothing)."""
    return "\n".join(_content_text(m.get("content")) for m in messages)


def last_user_text(messages: list[dict[str, Any]]) -> str:
    """The text of the last user turn ("" when there is none)."""
    for message in reversed(messages):
        if message.get("role") == "user":
            return _content_text(message.get("content"))
    return ""


def parse_label(text: str, labels: Sequence[str]) -> str | None:
    """The one label ``text`` names: an exact (case-insensitive) match after trimming punctuation, else the only
    label that occurs in it as a whole word; None when it names none or several."""
    trimmed = text.strip().strip(".!?\"'`*: \n").lower()
    for label in labels:
        if trimmed == label.lower():
            return str(label)
    lowered = text.lower()
    found = [lb for lb in labels if re.search(r"(?<!\w)" + re.escape(lb.lower()) + r"(?!\w)", lowered)]
    return found[0] if len(found) == 1 else None
