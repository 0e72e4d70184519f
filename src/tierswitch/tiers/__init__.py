"""Tier adapters: wrap any inference call as a ``Tier`` with a cost, capabilities and a version."""

from tierswitch.tiers.base import Capabilities, CostModel, RawOutput, Tier, make_prediction

__all__ = ["Capabilities", "CostModel", "RawOutput", "Tier", "make_prediction"]
