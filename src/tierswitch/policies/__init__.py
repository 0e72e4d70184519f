"""Policies choose a tier from the routing context; they compose with ``|``."""

from tierswitch.policies.base import FirstOf, Policy
from tierswitch.policies.cascade import Cascade
from tierswitch.policies.fixed import Fixed
from tierswitch.policies.threshold import Threshold

__all__ = ["Cascade", "FirstOf", "Fixed", "Policy", "Threshold"]
