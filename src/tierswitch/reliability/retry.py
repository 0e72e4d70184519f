"""Retry policy for guarded tiers: which failures are transient, and how long to wait before the next attempt.

A failure is transient when its cause chain holds a ``TransientTierError`` (the marker an inference function raises)
or an exception that ``retry_on`` accepts (a tuple of exception types, or a predicate). Delays grow exponentially and
use "full jitter" (a uniform draw between 0 and the exponential cap) so that many routers retrying the same tier do
not retry in lockstep.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from tierswitch.errors import ConfigError
from tierswitch.reliability.errors import TransientTierError
from tierswitch.validation import describe, finite

__all__ = ["Backoff", "RetryOn", "causes", "transient_predicate"]

RetryOn = tuple[type[BaseException], ...] | Callable[[BaseException], bool] | None


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay before retry ``attempt`` (0 for the first retry): ``uniform(0, min(max_s, base_s * factor**attempt))``
    with ``jitter=True``, or that cap itself with ``jitter=False``."""

    base_s: float = 0.05
    factor: float = 2.0
    max_s: float = 2.0
    jitter: bool = True

    def __post_init__(self) -> None:
        for name in ("base_s", "factor", "max_s"):  # finite: an infinite delay would never end (or overflow sleep)
            finite(f"backoff.{name}", getattr(self, name), low=0.0)
        if self.factor < 1:
            raise ConfigError("backoff.factor", f"must be >= 1 (delays never shrink), got {describe(self.factor)}")
        if self.max_s < self.base_s:
            raise ConfigError("backoff.max_s", f"must be >= base_s ({self.base_s}), got {describe(self.max_s)}")

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based)."""
        # min() before the power would overflow for large attempts; cap the exponent instead
        cap = min(self.max_s, self.base_s * self.factor ** min(attempt, 64))
        return rng.uniform(0.0, cap) if self.jitter else cap


def causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and every exception it was raised from (``__cause__``, else ``__context__``), without loops."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def transient_predicate(retry_on: RetryOn) -> Callable[[BaseException], bool]:
    """A predicate over a failure: True when any exception in its cause chain is a ``TransientTierError`` or is
    accepted by ``retry_on`` (exception types, or a predicate called on each exception of the chain)."""
    if retry_on is None:
        extra: Callable[[BaseException], bool] = lambda e: False  # noqa: E731
    elif isinstance(retry_on, tuple):
        if not all(isinstance(t, type) and issubclass(t, BaseException) for t in retry_on):
            raise ConfigError("retry_on", f"must be a tuple of exception types or a predicate, got "
                                          f"{describe(retry_on)}")
        types = retry_on
        extra = lambda e: isinstance(e, types)  # noqa: E731
    elif callable(retry_on):
        extra = retry_on
    else:
        raise ConfigError("retry_on", f"must be a tuple of exception types or a predicate, got {describe(retry_on)}")

    def is_transient(exc: BaseException) -> bool:
        return any(isinstance(e, TransientTierError) or extra(e) for e in causes(exc))

    return is_transient
