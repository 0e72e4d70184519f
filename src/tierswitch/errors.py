"""The one exception tree of tierswitch.

Every error the library raises on purpose is a :class:`TierswitchError`. Messages say what was wrong and what to
do about it. Third-party errors are mapped at the boundary with ``raise ... from exc``::

    TierswitchError
    ├── InvalidInput                 the payload cannot be routed (also a ValueError)
    │   ├── EmptyInput               None, "", [], {} ...
    │   ├── UnsupportedInput         a type or structure tierswitch cannot encode or measure
    │   ├── NonFiniteInput           NaN or inf in numeric input
    │   └── InputTooLarge            over the router's configured bound (characters, elements, batch size)
    ├── NoCapableTier                no tier accepts this modality and length
    ├── TierFailure                  a tier raised or returned something unusable (names the tier)
    │   ├── NonFiniteOutput          NaN/inf in an output, probabilities or confidence
    │   ├── TierTimeout              the tier did not answer in time
    │   ├── CircuitOpen              the tier's circuit breaker is open (tierswitch.reliability.errors)
    │   └── TierSaturated            the tier's bounded call queue is full (tierswitch.reliability.errors)
    ├── AllTiersFailed               every tier the policy allowed failed; carries each failure
    ├── ConfigError                  a config value is wrong; names the field (also a ValueError)
    ├── NotFittedError               a learned component used before ``fit`` (also a RuntimeError)
    ├── CacheError                   a cache backend failed; the router turns it into a miss
    │   └── CorruptCacheValue        a stored value could not be decoded
    └── DistillError                 the distillation machinery cannot continue
        ├── WeightVerificationError  published weights failed their checksum or shape checks
        └── LabelSetError            the student's class labels are not the teacher's
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "AllTiersFailed",
    "CacheError",
    "ConfigError",
    "CorruptCacheValue",
    "DistillError",
    "EmptyInput",
    "InputTooLarge",
    "InvalidInput",
    "LabelSetError",
    "NoCapableTier",
    "NonFiniteInput",
    "NonFiniteOutput",
    "NotFittedError",
    "TierFailure",
    "TierTimeout",
    "TierswitchError",
    "UnsupportedInput",
    "WeightVerificationError",
]


class TierswitchError(Exception):
    """Root of every error tierswitch raises on purpose."""


class InvalidInput(TierswitchError, ValueError):
    """The payload cannot be routed."""


class EmptyInput(InvalidInput):
    """The payload is None or empty."""


class UnsupportedInput(InvalidInput):
    """The payload's type or structure is not one tierswitch can encode or measure."""


class NonFiniteInput(InvalidInput):
    """Numeric input holds NaN or inf."""


class InputTooLarge(InvalidInput):
    """The payload (or batch) is over a configured bound."""


class NoCapableTier(TierswitchError):
    """No tier accepts this input's modality and length."""


class TierFailure(TierswitchError):
    """A tier raised, or returned something unusable. ``tier`` names it; the cause is chained."""

    def __init__(self, tier: str, message: str) -> None:
        super().__init__(f"tier {tier!r} failed: {message}")
        self.tier = tier


class NonFiniteOutput(TierFailure):
    """A tier returned NaN/inf in its output, probabilities or confidence."""


class TierTimeout(TierFailure):
    """A tier did not answer within its timeout."""


class AllTiersFailed(TierswitchError):
    """Every tier the policy allowed for a request failed. ``failures`` holds each one, in call order."""

    def __init__(self, failures: Sequence[TierFailure]) -> None:
        detail = "; ".join(str(f) for f in failures) or "no tier was called"
        super().__init__(
            f"every allowed tier failed ({detail}); check the tiers' logs, or allow a fallback tier"
        )
        self.failures = tuple(failures)


class ConfigError(TierswitchError, ValueError):
    """A configuration value is wrong. ``field`` is the dotted path of the value at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"config field {field!r}: {message}")
        self.field = field


class NotFittedError(TierswitchError, RuntimeError):
    """A learned component was used before ``fit``."""


class CacheError(TierswitchError):
    """A cache backend failed. The router never lets this fail a request: it is counted as a miss."""


class CorruptCacheValue(CacheError):
    """A stored cache value could not be decoded (wrong schema, corrupt bytes)."""


class DistillError(TierswitchError):
    """The distillation machinery cannot continue."""


class LabelSetError(DistillError):
    """The student's class labels are not the teacher's (e.g. ``("neg", "pos")`` against a teacher answering 0/1)."""


class WeightVerificationError(DistillError):
    """Published student weights failed verification (checksum, names or shapes)."""
