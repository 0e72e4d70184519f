"""Input inspection: modality detection and the cheap length features every estimator starts from.

Kept free of heavy work: a 200-character text costs a few ``len``/``isinstance`` calls, no tokenizer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tierswitch.errors import EmptyInput, UnsupportedInput
from tierswitch.types import MODALITIES, Features
from tierswitch.validation import describe

__all__ = [
    "CHARS_PER_TOKEN",
    "approx_tokens",
    "check_conversation",
    "detect_modality",
    "extract_features",
    "is_conversation",
]

CHARS_PER_TOKEN = 4  # the usual rule of thumb for English with BPE tokenizers; a tokenizer would cost ~100x more


def approx_tokens(chars: int) -> int:
    """Approximate token count of a text of ``chars`` characters (at least 1 for a non-empty text)."""
    return (chars + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN


def is_conversation(x: Any) -> bool:
    """A list of chat turns: mappings with a ``content`` key (``role`` optional)."""
    return isinstance(x, list) and bool(x) and all(isinstance(t, Mapping) and "content" in t for t in x)


def check_conversation(x: Any) -> str:
    """Validate a list of chat turns and return its text (the turns' contents, one per line; of multimodal
    content, the text parts).

    Each turn must be a mapping with a str ``content`` (and, if present, a str ``role``); anything else raises
    ``UnsupportedInput`` naming the turn at fault, and a list with no turns raises ``EmptyInput``.
    """
    if not x:
        raise EmptyInput("conversation has no turns; send at least one {'role': 'user', 'content': '...'} turn")
    texts = []
    for i, turn in enumerate(x):
        if not isinstance(turn, Mapping):
            raise UnsupportedInput(
                f"conversation turn {i} is a {type(turn).__name__}; every turn must be a dict like "
                "{'role': 'user', 'content': '...'}"
            )
        if "content" not in turn:
            raise UnsupportedInput(f"conversation turn {i} has no 'content' key (keys: {sorted(map(str, turn))[:5]}); "
                                   "put the turn's text under 'content'")
        content = turn["content"]
        if isinstance(content, list):  # multimodal parts: the text parts count as text, the others as nothing
            if not all(isinstance(p, Mapping) and isinstance(p.get("type"), str) for p in content):
                raise UnsupportedInput(f"conversation turn {i} content parts must be dicts with a 'type', like "
                                       "{'type': 'text', 'text': '...'}")
            content = "\n".join(str(p.get("text", "")) for p in content if p.get("type") == "text")
        elif content is None and turn.get("tool_calls"):
            content = ""  # an assistant turn that only calls tools
        if not isinstance(content, str):
            raise UnsupportedInput(
                f"conversation turn {i} content is a {type(content).__name__}; it must be a str "
                "or a list of content parts"
            )
        role = turn.get("role")
        if role is not None and not isinstance(role, str):
            raise UnsupportedInput(f"conversation turn {i} role is a {type(role).__name__}; use a str like 'user'")
        texts.append(content)
    from tierswitch.tiers.chat import validate_messages  # the chat protocol's rules, at admission (InvalidMessages)

    validate_messages(x)
    return "\n".join(texts)


def _empty(x: Any) -> EmptyInput:
    return EmptyInput(f"input is an empty {type(x).__name__}; send at least one character, turn or element")


def detect_modality(x: Any) -> str:
    """Guess the modality of ``x``: text (str or a conversation), image (2-D/3-D array), tabular (1-D array or
    a flat list of numbers), multimodal (a mapping with two or more of text/image/tabular parts).

    Raises ``EmptyInput`` for None and ``UnsupportedInput`` for anything else; callers can pass ``modality=``
    to the router instead of relying on detection.
    """
    if isinstance(x, str):
        return "text"
    if x is None:
        raise EmptyInput("input is None; pass a str, a conversation, an array or a {'text': ..., 'image': ...} dict")
    if isinstance(x, np.ndarray):
        return "image" if x.ndim in (2, 3) else "tabular"
    if isinstance(x, (list, tuple, Mapping)) and len(x) == 0:
        raise _empty(x)
    if isinstance(x, Mapping) and "messages" in x:  # a chat-completions request body
        check_conversation(_messages(x))
        return "text"
    if isinstance(x, Mapping):
        parts = [k for k in ("text", "image", "tabular") if k in x]
        if len(parts) >= 2:
            return "multimodal"
        if len(parts) == 1:
            return parts[0]
        raise UnsupportedInput(
            f"a dict input needs 'text', 'image' or 'tabular' keys, got {sorted(map(str, x))[:5]}"
        )
    if isinstance(x, list) and any(isinstance(t, Mapping) for t in x):  # meant as a conversation: check every turn
        check_conversation(x)
        return "text"
    if isinstance(x, (list, tuple)) and x and all(isinstance(v, (int, float)) for v in x):
        return "tabular"
    if isinstance(x, bytes):
        raise UnsupportedInput("bytes input: decode it to str (text) or load it into a numpy array (image)")
    raise UnsupportedInput(
        f"cannot route a {type(x).__name__}; pass a str, a list of chat turns, a numeric array or list, "
        "or a dict of parts, or pass modality= explicitly"
    )


def _array_size(x: Any) -> int:
    if isinstance(x, np.ndarray):
        return int(x.size)
    try:
        return len(x)
    except TypeError:  # e.g. {"text": ..., "tabular": 5}
        raise UnsupportedInput(
            f"tabular part must be a numeric array or list, got a {type(x).__name__}; wrap a single value in a list"
        ) from None


def _messages(x: Mapping[str, Any]) -> list[Any]:
    """A request dict's messages, after the request's own checks (parameters, reserved keys: InvalidMessages)."""
    from tierswitch.tiers.chat import normalize

    messages = x["messages"]
    if not isinstance(messages, list):
        raise UnsupportedInput(f"a request dict's 'messages' must be a list of chat turns, got "
                               f"{type(messages).__name__}")
    normalize(x)
    return messages


def _text_of(x: Any) -> str | None:
    if isinstance(x, str):
        return x
    if isinstance(x, list):
        return check_conversation(x)
    if isinstance(x, Mapping) and "messages" in x:
        return check_conversation(_messages(x))
    return None


def extract_features(x: Any, modality: str | None = None) -> Features:
    """Measure ``x``: characters and approximate tokens for text, pixels for images, elements for arrays.

    ``modality`` overrides detection (it must be one of the known modalities).
    """
    if isinstance(x, str) and modality in (None, "text"):  # the hot path: plain text
        n = len(x)
        if n == 0:
            raise EmptyInput("input is an empty string; send at least one character")
        tokens = (n + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN
        return Features("text", tokens, chars=n, tokens=tokens)
    if modality is None:
        modality = detect_modality(x)
    elif modality not in MODALITIES:
        raise UnsupportedInput(f"unknown modality {describe(modality)}; allowed: {list(MODALITIES)}")
    features = Features(modality, 0)
    parts: Sequence[tuple[str, Any]]
    if isinstance(x, Mapping) and "messages" not in x:
        parts = [(k, x[k]) for k in ("text", "image", "tabular") if k in x]
    elif modality == "text":
        parts = [("text", x)]
    elif modality == "image":
        parts = [("image", x)]
    else:
        parts = [("tabular", x)]
    for kind, part in parts:
        if kind == "text":
            text = _text_of(part)
            if text is None:
                raise UnsupportedInput(f"text part must be a str or a list of chat turns, got {type(part).__name__}")
            features.chars += len(text)
            features.tokens += approx_tokens(len(text))
            if not isinstance(part, str):
                features.turns += len(part["messages"] if isinstance(part, Mapping) else part)
        elif kind == "image":
            try:
                arr = part if isinstance(part, np.ndarray) else np.asarray(part)
            except ValueError as exc:  # ragged nested lists
                raise UnsupportedInput(f"image part is not a rectangular array ({exc}); pass a numpy array") from None
            if arr.ndim < 2:
                raise UnsupportedInput(f"image must have 2 or 3 dimensions, got shape {arr.shape}")
            features.pixels += int(arr.shape[0] * arr.shape[1])
        else:
            features.elements += _array_size(part)
    features.length = features.tokens + features.pixels + features.elements
    if features.length == 0:
        raise EmptyInput(f"{modality} input is empty; send at least one character, pixel or element")
    return features
