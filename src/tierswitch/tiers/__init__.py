"""Tier adapters: wrap any inference call as a ``Tier`` with a cost, capabilities and a version.

``TorchTier`` lives in ``tierswitch.tiers.torch`` (imported on demand, so ``import tierswitch`` never loads torch).
"""

from tierswitch.tiers.base import Capabilities, CostModel, RawOutput, Tier, make_prediction
from tierswitch.tiers.callable import CallableTier
from tierswitch.tiers.replay import Recorded, ReplayTier
from tierswitch.tiers.sklearn import SklearnTier

__all__ = [
    "CallableTier",
    "Capabilities",
    "CostModel",
    "RawOutput",
    "Recorded",
    "ReplayTier",
    "SklearnTier",
    "Tier",
    "make_prediction",
]
