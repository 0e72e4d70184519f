"""The replay spec: which table holds the recorded outcomes, and which columns are each tier's outcome and cost.

A spec is a small YAML or TOML file (or a dict)::

    data: ../shared/data/gsm8k-routellm/gsm8k_responses.csv   # CSV or JSONL; relative paths: see ``base_dir``
    input: prompt                      # the column routed (the estimator's input)
    id: null                           # optional id column (default: the row's 1-based position in the table)
    numeric: []                        # optional numeric columns handed to the estimator as extra features
    exclude: {path: ../shared/data/gsm8k-routellm/contaminated_prompts.jsonl, key: eval_prompt}   # optional
    tiers:                             # cheapest first
      - name: mixtral
        outcome: mistralai/Mixtral-8x7B-Instruct-v0.1     # bool, "True"/"False", 0/1 or a score in [0, 1]
        cost: {per_token: 0.24e-6, text: [prompt, mistralai/Mixtral-8x7B-Instruct-v0.1_response]}
      - name: gpt4
        outcome: gpt-4-1106-preview
        cost: {per_token: 24.7e-6, text: [prompt, gpt-4-1106-preview_response]}
        latency: null                  # optional column of seconds

A tier's ``cost`` is a number (per call), ``{column: NAME}``, or ``{per_call: A, per_token: B, tokens: NAME}``
(a column of token counts) or ``{..., text: [NAMES]}`` (approximate tokens of those text columns, ``ceil(chars/4)``,
the same rule the router's per-unit costs use). Every error is a ``ConfigError`` naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tierswitch.config import parse_file
from tierswitch.errors import ConfigError
from tierswitch.validation import describe, finite, number, only_keys

__all__ = ["CostSpec", "ReplaySpec", "TierSpec", "load_spec", "spec_from_dict"]

_TOP_KEYS = {"data", "format", "input", "id", "numeric", "exclude", "tiers"}
_TIER_KEYS = {"name", "outcome", "cost", "latency", "confidence"}
_COST_KEYS = {"column", "per_call", "per_token", "tokens", "text"}


@dataclass(frozen=True)
class CostSpec:
    """How one tier's cost per request is read: a fixed ``per_call``, a ``column``, or ``per_token`` times a token
    count (a ``tokens`` column, or the approximate tokens of the ``text`` columns)."""

    per_call: float = 0.0
    column: str | None = None
    per_token: float = 0.0
    tokens: str | None = None
    text: tuple[str, ...] = ()

    def columns(self) -> list[str]:
        return [c for c in (self.column, self.tokens) if c] + list(self.text)


@dataclass(frozen=True)
class TierSpec:
    """One tier of the replay: its name, outcome column, cost, and optional latency / confidence columns."""

    name: str
    outcome: str
    cost: CostSpec
    latency: str | None = None
    confidence: str | None = None


@dataclass(frozen=True)
class ReplaySpec:
    """A validated replay spec (see the module docstring). ``data`` and ``exclude_path`` are resolved paths."""

    data: Path
    format: str
    input: str
    tiers: tuple[TierSpec, ...]
    id: str | None = None
    numeric: tuple[str, ...] = ()
    exclude_path: Path | None = None
    exclude_key: str | None = None

    @property
    def tier_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tiers)


def load_spec(path: str | Path, base_dir: str | Path | None = None) -> ReplaySpec:
    """Read a YAML (``.yaml``/``.yml``) or TOML (``.toml``, Python >= 3.11) spec file.

    Relative paths inside it are resolved against ``base_dir`` (default: the working directory, so specs that say
    ``../shared/data/...`` are run from the project root).
    """
    return spec_from_dict(parse_file(Path(path), "spec"), base_dir)


def _str(config: Mapping[str, Any], key: str, field: str, required: bool = True) -> str | None:
    value = config.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{field}{key}", f"must be a column name (a non-empty string), got {describe(value)}")
    return value


def _cost(config: Any, field: str) -> CostSpec:
    if isinstance(config, (int, float)) and not isinstance(config, bool):
        return CostSpec(per_call=finite(f"{field}.per_call", config, low=0.0))
    if not isinstance(config, Mapping):
        raise ConfigError(field, f"must be a number or a mapping ({sorted(_COST_KEYS)}), got {describe(config)}")
    only_keys(config, field, _COST_KEYS)
    column = _str(config, "column", f"{field}.", required=False)
    tokens = _str(config, "tokens", f"{field}.", required=False)
    text = config.get("text", [])
    if isinstance(text, str):
        text = [text]
    if not isinstance(text, list) or not all(isinstance(t, str) and t for t in text):
        raise ConfigError(f"{field}.text", f"must be a list of text column names, got {describe(text)}")
    per_token = number(config, "per_token", field, default=0.0, low=0.0)
    if column and (tokens or text or per_token or "per_call" in config):
        raise ConfigError(f"{field}.column", "a cost column stands alone; drop per_call/per_token/tokens/text")
    if tokens and text:
        raise ConfigError(f"{field}.tokens", "give either a tokens column or text columns, not both")
    if per_token and not (tokens or text):
        raise ConfigError(f"{field}.per_token", "needs a token count: add tokens: COLUMN or text: [COLUMNS]")
    if (tokens or text) and "per_token" not in config:
        raise ConfigError(f"{field}.per_token", "is required when tokens or text columns are given")
    if not (column or per_token or "per_call" in config):
        raise ConfigError(field, "needs per_call, column, or per_token with tokens/text")
    return CostSpec(number(config, "per_call", field, default=0.0, low=0.0), column, per_token, tokens, tuple(text))


def _resolve(value: Any, field: str, base: Path) -> Path:
    if not isinstance(value, str) or not value:
        raise ConfigError(field, f"must be a file path, got {describe(value)}")
    path = Path(value)
    return path if path.is_absolute() else base / path


def spec_from_dict(config: Any, base_dir: str | Path | None = None) -> ReplaySpec:
    """Validate a spec given as a dict (see the module docstring)."""
    if not isinstance(config, Mapping):
        raise ConfigError("spec", f"must be a mapping, got {type(config).__name__}")
    unknown = sorted(set(config) - _TOP_KEYS)
    if unknown:
        raise ConfigError(unknown[0], f"unknown key; allowed: {sorted(_TOP_KEYS)}")
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    data = _resolve(config.get("data"), "data", base).resolve()
    fmt = config.get("format") or {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}.get(data.suffix.lower())
    if fmt not in ("csv", "jsonl"):
        raise ConfigError("format", f"must be csv or jsonl (or a .csv/.jsonl data file), got {describe(fmt)}")
    numeric = config.get("numeric", [])
    if not isinstance(numeric, list) or not all(isinstance(n, str) and n for n in numeric):
        raise ConfigError("numeric", f"must be a list of column names, got {describe(numeric)}")
    exclude_path = exclude_key = None
    if config.get("exclude") is not None:
        exclude = config["exclude"]
        if not isinstance(exclude, Mapping) or set(exclude) - {"path", "key"}:
            raise ConfigError("exclude", "must be {path: FILE, key: FIELD} (a JSONL file) or {path: FILE} (one a line)")
        exclude_path = _resolve(exclude.get("path"), "exclude.path", base)
        exclude_key = _str(exclude, "key", "exclude.", required=False)
    tiers = config.get("tiers")
    if not isinstance(tiers, list) or len(tiers) < 2:
        raise ConfigError("tiers", "must list at least 2 tiers, cheapest first")
    built = []
    for i, tier in enumerate(tiers):
        field = f"tiers[{i}]"
        if not isinstance(tier, Mapping):
            raise ConfigError(field, f"must be a mapping with name, outcome and cost, got {describe(tier)}")
        only_keys(tier, field, _TIER_KEYS)
        name = _str(tier, "name", f"{field}.")
        assert name is not None
        if ":" in name:
            raise ConfigError(f"{field}.name", f"must not contain ':', got {describe(name)}")
        if "cost" not in tier:
            raise ConfigError(f"{field}.cost", "is required: a number per call, {column: ...} or per_token pricing")
        built.append(TierSpec(
            name, _str(tier, "outcome", f"{field}.") or "", _cost(tier["cost"], f"{field}.cost"),
            _str(tier, "latency", f"{field}.", required=False), _str(tier, "confidence", f"{field}.", required=False),
        ))
    names = [t.name for t in built]
    if len(set(names)) != len(names):
        raise ConfigError("tiers", f"tier names must be unique, got {names}")
    return ReplaySpec(data, fmt, _str(config, "input", "") or "", tuple(built), _str(config, "id", "", required=False),
                      tuple(numeric), exclude_path, exclude_key)
