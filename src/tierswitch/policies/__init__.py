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
from tierswitch.policies.format_check import FormatCheck
from tierswitch.policies.learned import LearnedPolicy
from tierswitch.policies.self_verify import SelfVerify
from tierswitch.policies.threshold import Threshold
from tierswitch.policies.verified_cascade import VerifiedCascade
from tierswitch.policies.verify import AllOf, LogprobConfidence, Signal, Verifier

__all__ = [
    "ABTest",
    "AllOf",
    "BudgetController",
    "Cascade",
    "ContextualBandit",
    "FirstOf",
    "Fixed",
    "FormatCheck",
    "LearnedPolicy",
    "LogprobConfidence",
    "Policy",
    "SelfVerify",
    "Signal",
    "Threshold",
    "VerifiedCascade",
    "Verifier",
]
