"""Policies choose a tier from the routing context; they compose with ``|``."""

from tierswitch.policies.base import FirstOf, Policy

__all__ = ["FirstOf", "Policy"]
