"""tierswitch: adaptive tier-switching middleware for ML inference.

Wrap a cheap, a distilled and an expensive model (or any N tiers) in a ``Router``; every input goes to the cheapest
tier that will likely be right, results are cached, and every decision is traced. ``import tierswitch`` loads no
torch and opens no connection: the torch adapter, the Redis backends and distillation live in their own modules.
"""

from tierswitch.assembly.reload import ReloadingRouter
from tierswitch.cache import Cache, CacheStats, MemoryCache
from tierswitch.config import load_config, policy_from_config
from tierswitch.decorator import tiered
from tierswitch.errors import (
    AllTiersFailed,
    ConfigError,
    EmptyInput,
    InvalidInput,
    NoCapableTier,
    NonFiniteInput,
    NonFiniteOutput,
    NotFittedError,
    StreamInterrupted,
    TierFailure,
    TierswitchError,
    UnsupportedInput,
)
from tierswitch.estimator import ComplexityEstimator, Estimator
from tierswitch.policies import (
    ABTest,
    BudgetController,
    Cascade,
    ContextualBandit,
    FirstOf,
    Fixed,
    LearnedPolicy,
    Policy,
    Threshold,
)
from tierswitch.reliability import CircuitBreaker, Guarded, TransientTierError
from tierswitch.router import Router
from tierswitch.telemetry import DecisionLog
from tierswitch.tiers import CallableTier, Capabilities, CostModel, RawOutput, Recorded, ReplayTier, SklearnTier, Tier
from tierswitch.types import (
    Decision,
    DecisionRecord,
    Features,
    Prediction,
    Routed,
    RoutingContext,
    TraceStep,
    Usage,
)

__version__ = "0.1.0"

__all__ = [
    "OpenAITier",
    "StreamInterrupted",
    "TokenPrices",
    "Usage",
    "CircuitBreaker",
    "Guarded",
    "TransientTierError",
    "ABTest",
    "BudgetController",
    "ContextualBandit",
    "DecisionLog",
    "LearnedPolicy",
    "ReloadingRouter",
    "AllTiersFailed",
    "Cache",
    "CacheStats",
    "CallableTier",
    "Capabilities",
    "Cascade",
    "ComplexityEstimator",
    "ConfigError",
    "CostModel",
    "Decision",
    "DecisionRecord",
    "EmptyInput",
    "Estimator",
    "Features",
    "FirstOf",
    "Fixed",
    "InvalidInput",
    "MemoryCache",
    "NoCapableTier",
    "NonFiniteInput",
    "NonFiniteOutput",
    "NotFittedError",
    "Policy",
    "Prediction",
    "RawOutput",
    "Recorded",
    "ReplayTier",
    "Routed",
    "Router",
    "RoutingContext",
    "SklearnTier",
    "Threshold",
    "Tier",
    "TierFailure",
    "TierswitchError",
    "TraceStep",
    "UnsupportedInput",
    "load_config",
    "policy_from_config",
    "tiered",
]


def __getattr__(name: str) -> object:
    """``OpenAITier`` and ``TokenPrices`` on first use, so ``import tierswitch`` does not load httpx."""
    if name in ("OpenAITier", "TokenPrices"):
        from tierswitch.tiers import openai

        return getattr(openai, name)
    raise AttributeError(f"module 'tierswitch' has no attribute {name!r}")
