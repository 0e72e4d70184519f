"""The one exception tree of tierswitch.

Every error the library raises on purpose is a :class:`TierswitchError`. Messages say what was wrong and what to
do about it. Third-party errors are mapped at the boundary with ``raise ... from exc``::

    TierswitchError
    ├── InvalidInput                 the payload cannot be routed (also a ValueError)
    │   ├── EmptyInput               None, "", [], {} ...
    │   ├── UnsupportedInput         a type or structure tierswitch cannot encode or measure
    │   ├── NonFiniteInput           NaN or inf in numeric input
    │   ├── InputTooLarge            over the router's configured bound (characters, elements, batch size)
    │   └── InvalidMessages          a chat payload is malformed (names the message index and field; also
    │                                UnsupportedInput)
    ├── NoCapableTier                no tier accepts this modality and length
    ├── TierFailure                  a tier raised or returned something unusable (names the tier)
    │   ├── NonFiniteOutput          NaN/inf in an output, probabilities or confidence
    │   ├── TierTimeout              the tier did not answer in time
    │   ├── UpstreamRejected         an HTTP model server refused the request (4xx); carries its message
    │   ├── UpstreamProtocolError    an HTTP model server's answer is unusable (invalid JSON, no choices,
    │   │                            truncated stream, unparseable label)
    │   ├── CircuitOpen              the tier's circuit breaker is open (tierswitch.reliability.errors)
    │   ├── TierSaturated            the tier's bounded call queue is full (tierswitch.reliability.errors)
    │   └── StreamInterrupted        a streamed answer broke off after part of it was sent
    ├── AllTiersFailed               every tier the policy allowed failed; carries each failure
    ├── ConfigError                  a config value is wrong; names the field (also a ValueError)
    ├── NotFittedError               a learned component used before ``fit`` (also a RuntimeError)
    ├── CacheError                   a cache backend failed; the router turns it into a miss
    │   └── CorruptCacheValue        a stored value could not be decoded
    └── DistillError                 the distillation machinery cannot continue
        ├── WeightVerificationError  published weights failed their checksum or shape checks
        └── LabelSetError            the student's class labels are not the teacher's

    TransientTierError (an Exception, deliberately outside the tree: see tierswitch.reliability.errors)
    ├── UpstreamRateLimited          an HTTP model server answered 429 (``retry_after`` in seconds, or None)
    └── UpstreamUnavailable          5xx, or the connection failed or dropped (names the tier and URL)
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
    "StreamInterrupted",
    "NonFiniteInput",
    "NonFiniteOutput",
    "NotFittedError",
    "InvalidMessages",
    "TierFailure",
    "TierTimeout",
    "TierswitchError",
    "TransientTierError",
    "UnsupportedInput",
    "UpstreamProtocolError",
    "UpstreamRateLimited",
    "UpstreamRejected",
    "UpstreamUnavailable",
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


class InvalidMessages(UnsupportedInput):
    """A chat payload (messages or a request body) is malformed. ``index`` is the message at fault (None for the
    body itself) and ``field`` the key, e.g. ``messages[2].content``."""

    def __init__(self, field: str, message: str | None = None, index: int | None = None) -> None:
        if message is None:  # one argument: a whole message (as ``type(exc)(text)`` re-raises it), no field
            super().__init__(field)
            self.field = ""
        else:
            super().__init__(f"{field}: {message}")
            self.field = field
        self.index = index


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


class StreamInterrupted(TierFailure):
    """A streamed answer broke off after some of it was sent: nothing is cached, and no fallback can take over
    (the client already has part of the text). Retry the request."""


class UpstreamRejected(TierFailure):
    """An HTTP model server refused the request with a 4xx status; ``status`` and the server's ``server_message``
    are kept. Not retried: the same request would be refused again."""

    def __init__(self, tier: str, status: int, server_message: str, url: str) -> None:
        super().__init__(tier, f"{url} refused the request with HTTP {status}: {server_message}")
        self.status = status
        self.server_message = server_message


class UpstreamProtocolError(TierFailure):
    """An HTTP model server answered, but not with a usable chat completion (invalid JSON, no choices, a stream
    cut before ``[DONE]``, an answer that is none of the configured labels). Nothing of it is returned or cached."""


class TransientTierError(Exception):
    """Raise this (or a subclass) from an inference function for an error worth retrying: a rate limit, a dropped
    connection, a replica restarting. ``Guarded`` retries it with backoff; any other error is not retried.
    (Defined here so tier adapters can raise it; ``tierswitch.reliability`` re-exports it.)"""


class UpstreamRateLimited(TransientTierError):
    """An HTTP model server answered 429. ``retry_after`` is its Retry-After in seconds (None if not given)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class UpstreamUnavailable(TransientTierError):
    """An HTTP model server answered 5xx, or the connection could not be made or dropped; the message names the
    tier and URL. ``retry_after`` as for ``UpstreamRateLimited`` (a 503 may send one)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


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
