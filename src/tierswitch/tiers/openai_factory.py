"""How config assembly turns a ``kind: openai`` tier section into a tier (imports httpx only when it builds one)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tierswitch.tiers.openai_config import openai_kwargs
from tierswitch.tiers.openai_protocol import TokenPrices

__all__ = ["openai_tier"]


def openai_tier(name: str, config: Mapping[str, Any], field: str, target: Any = None) -> Any:
    """The tier a config's ``kind: openai`` section names. With nothing given in code: an ``OpenAITier`` built from
    the section. A ``Tier`` given in code for that name wins as is; a plain function given in code (a stand-in, e.g.
    in tests) becomes a ``CallableTier`` priced per input token at the section's ``input_per_mtok``."""
    from tierswitch.tiers.base import Capabilities, CostModel, Tier
    from tierswitch.tiers.callable import CallableTier
    from tierswitch.tiers.openai import OpenAITier

    if target is None:
        return OpenAITier.from_config(name, config, field)
    kwargs = openai_kwargs(config, field)  # validated even when code supplies the tier
    if isinstance(target, Tier):
        return target
    prices: TokenPrices = kwargs.get("cost", TokenPrices())
    return CallableTier(name, target, cost=CostModel(per_unit=prices.input_per_mtok / 1e6),
                        capabilities=Capabilities.of(None, kwargs.get("max_length")),
                        version=kwargs.get("version", "1"))
