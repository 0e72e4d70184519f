"""Policies choose a tier from the routing context; they compose with ``|``.

Fixed, Threshold and Cascade are stateless; BudgetController, LearnedPolicy, ContextualBandit and ABTest learn from
the decision records the router hands them (their ``observe`` is attached as a hook automatically).
"""

from tierswitch.policies.ab import ABTest
from tierswitch.policies.bandit import ContextualBandit
from tierswitch.policies.base import FirstOf, Policy
from tierswitch.policies.budget import BudgetController
from tierswitch.policies.cascade import Cascade
from tierswitch.policies.fixed import Fixed
from tierswitch.policies.learned import LearnedPolicy
from tierswitch.policies.threshold import Threshold

__all__ = [
    "ABTest",
    "BudgetController",
    "Cascade",
    "ContextualBandit",
    "FirstOf",
    "Fixed",
    "LearnedPolicy",
    "Policy",
    "Threshold",
]
