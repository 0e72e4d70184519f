"""``OpenAITier``'s config section, parsed into constructor keywords with field-named ``ConfigError``s.

```yaml
tiers:
  small:
    kind: openai
    base_url: http://127.0.0.1:8001/v1
    model: mixtral
    api_key_env: SMALL_API_KEY        # the key itself never goes in a config file
    params: {temperature: 0, max_tokens: 512}
    cost: {input_per_mtok: 0.24, output_per_mtok: 0.24}
    confidence: mean                  # mean | min | first | null
    timeout_s: 30
    retries: 2
```
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tierswitch.errors import ConfigError
from tierswitch.tiers.openai_protocol import TokenPrices
from tierswitch.validation import number, only_keys, positive, section

__all__ = ["OPENAI_KEYS", "openai_kwargs"]

OPENAI_KEYS = {"kind", "base_url", "model", "api_key_env", "params", "headers", "timeout_s", "cost", "confidence",
               "retries", "backoff_s", "max_retry_delay_s", "cache_sampled", "labels", "version", "max_length",
               "estimate_output_tokens", "max_connections"}


def _str(config: Mapping[str, Any], key: str, field: str, required: bool = False) -> str | None:
    value = config.get(key)
    if value is None:
        if required:
            raise ConfigError(f"{field}.{key}", "is required")
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{field}.{key}", f"must be a non-empty string, got {value!r}")
    return value


def openai_kwargs(config: Any, field: str) -> dict[str, Any]:
    """Keywords for ``OpenAITier(name, **kwargs)`` from a ``tiers.NAME`` mapping."""
    config = section(config, field)
    only_keys(config, field, OPENAI_KEYS)
    if config.get("kind", "openai") != "openai":
        raise ConfigError(f"{field}.kind", f"must be 'openai' here, got {config.get('kind')!r}")
    kwargs: dict[str, Any] = {"base_url": _str(config, "base_url", field, True),
                              "model": _str(config, "model", field, True)}
    if "api_key" in config:  # unreachable (only_keys), kept as documentation of the rule
        raise ConfigError(f"{field}.api_key", "never put a key in a config file; use api_key_env")
    for key in ("api_key_env", "confidence"):
        if key in config:
            kwargs[key] = config[key] if key == "confidence" else _str(config, key, field)
    for key in ("params", "headers"):
        if key in config:
            value = section(config[key], f"{field}.{key}")
            if not all(isinstance(k, str) for k in value):
                raise ConfigError(f"{field}.{key}", "keys must be strings")
            if key == "headers" and not all(isinstance(v, str) for v in value.values()):
                raise ConfigError(f"{field}.headers", "values must be strings")
            if key == "params" and ({"model", "messages", "stream"} & set(value)):
                raise ConfigError(f"{field}.params", "model, messages and stream are set by the tier; drop them")
            kwargs[key] = dict(value)
    if "cost" in config:
        cost = section(config["cost"], f"{field}.cost")
        only_keys(cost, f"{field}.cost", {"input_per_mtok", "output_per_mtok"})
        kwargs["cost"] = TokenPrices(number(cost, "input_per_mtok", f"{field}.cost", 0.0, 0.0),
                                     number(cost, "output_per_mtok", f"{field}.cost", 0.0, 0.0))
    for key in ("timeout_s", "backoff_s", "max_retry_delay_s"):
        if key in config:
            kwargs[key] = number(config, key, field, low=0.0)
    if "timeout_s" in kwargs:
        positive(f"{field}.timeout_s", kwargs["timeout_s"])
    for key in ("retries", "max_length", "estimate_output_tokens", "max_connections"):
        if key in config:
            value = config[key]
            if key == "retries":
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise ConfigError(f"{field}.retries", f"must be an integer >= 0, got {value!r}")
            else:
                positive(f"{field}.{key}", value, integer=True)
            kwargs[key] = value
    if "cache_sampled" in config:
        if not isinstance(config["cache_sampled"], bool):
            raise ConfigError(f"{field}.cache_sampled", f"must be true or false, got {config['cache_sampled']!r}")
        kwargs["cache_sampled"] = config["cache_sampled"]
    if "labels" in config:
        labels = config["labels"]
        if not isinstance(labels, list) or not labels or not all(isinstance(lb, str) and lb for lb in labels):
            raise ConfigError(f"{field}.labels", f"must be a non-empty list of strings, got {labels!r}")
        kwargs["labels"] = labels
    if "version" in config:
        version = config["version"]
        if isinstance(version, bool) or not isinstance(version, (str, int)) or not str(version) or ":" in str(version):
            raise ConfigError(f"{field}.version", f"must be a non-empty string or integer without ':', got {version!r}")
        kwargs["version"] = str(version)
    return kwargs


