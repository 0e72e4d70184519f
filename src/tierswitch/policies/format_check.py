"""``FormatCheck``: a generated answer passes (1.0) or fails (0.0) a format rule: a regex, or a small JSON schema.

The schema is deliberately small ("JSON-schema-lite"): ``{"required": {"answer": "number", "steps": "array"}}``
with types string, number, integer, boolean, array, object. The answer may wrap its JSON in a ```json fence.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from tierswitch.errors import ConfigError
from tierswitch.policies.verify import Signal, answer_text
from tierswitch.types import Prediction

__all__ = ["ENDS_WITH_NUMBER", "FormatCheck"]

#: an answer whose last non-space token is a number (GSM8K style: "... #### 18", "The answer is 3.5.")
ENDS_WITH_NUMBER = r"-?\$?\d[\d,]*(?:\.\d+)?\s*\.?\s*$"
_TYPES: dict[str, tuple[type, ...]] = {"string": (str,), "number": (int, float), "integer": (int,),
                                       "boolean": (bool,), "array": (list,), "object": (dict,)}
_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.S)


class FormatCheck(Signal):
    """1.0 when the answer matches ``regex`` (``re.search``) and/or parses as JSON meeting ``schema``, else 0.0."""

    def __init__(self, regex: str | None = None, schema: Mapping[str, Any] | None = None,
                 name: str | None = None) -> None:
        if regex is None and schema is None:
            raise ConfigError("policy.signal", "a format check needs a regex or a schema")
        try:
            self.pattern = re.compile(regex) if regex is not None else None
        except re.error as exc:
            raise ConfigError("policy.signal.regex", f"is not a valid regular expression: {exc}") from exc
        self.regex = regex
        self.required: dict[str, str] = {}
        if schema is not None:
            if not isinstance(schema, Mapping) or set(schema) - {"required"}:
                raise ConfigError("policy.signal.schema", "must be {required: {key: type}}")
            required = schema.get("required", {})
            if not isinstance(required, Mapping):
                raise ConfigError("policy.signal.schema.required", "must map keys to type names")
            for key, kind in required.items():
                if kind not in _TYPES:
                    raise ConfigError(f"policy.signal.schema.required.{key}",
                                      f"unknown type {kind!r}; allowed: {sorted(_TYPES)}")
            self.required = {str(k): str(v) for k, v in required.items()}
        self.schema = dict(schema) if schema is not None else None
        self.name = name or ("format:json" if schema is not None and regex is None else "format")

    @classmethod
    def ends_with_number(cls) -> FormatCheck:
        return cls(ENDS_WITH_NUMBER, name="format:ends_with_number")

    def _json_ok(self, text: str) -> bool:
        fenced = _FENCE.match(text.strip())
        try:
            value = json.loads(fenced.group(1) if fenced else text)
        except ValueError:
            return False
        if not isinstance(value, dict):
            return False
        for key, kind in self.required.items():
            item = value.get(key)
            if key not in value or not isinstance(item, _TYPES[kind]):
                return False
            if kind in ("number", "integer") and isinstance(item, bool):
                return False
        return True

    def score(self, payload: Any, prediction: Prediction) -> float | None:
        text = answer_text(prediction)
        if self.pattern is not None and not self.pattern.search(text):
            return 0.0
        if self.schema is not None and not self._json_ok(text):
            return 0.0
        return 1.0

    def to_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"kind": "format"}
        if self.regex is not None:
            config["regex"] = self.regex
        if self.schema is not None:
            config["schema"] = self.schema
        return config

    def __repr__(self) -> str:
        return f"FormatCheck(regex={self.regex!r}, schema={self.schema!r})"
