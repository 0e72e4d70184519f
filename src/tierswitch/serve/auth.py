"""API keys: the config holds sha256 digests only; a presented key is hashed and compared in constant time."""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from tierswitch.serve.errors import ApiError
from tierswitch.serve.settings import hash_key

__all__ = ["ANONYMOUS", "identify"]

ANONYMOUS = "anonymous"


def identify(keys: Mapping[str, str], authorization: str | None) -> str:
    """The name of the key in ``Authorization: Bearer KEY``; ``ANONYMOUS`` when no keys are configured; a 401
    ``ApiError`` otherwise. Every configured digest is compared (``hmac.compare_digest``, no early exit), so the
    time taken says nothing about which digest came close."""
    if not keys:
        return ANONYMOUS
    if not authorization or not authorization.startswith("Bearer ") or not authorization[7:].strip():
        raise ApiError(401, "missing API key: send `Authorization: Bearer YOUR_KEY`", "missing_api_key")
    presented = hash_key(authorization[7:].strip())
    found: str | None = None
    for digest, name in keys.items():
        if hmac.compare_digest(presented, digest):
            found = name
    if found is None:
        raise ApiError(401, "incorrect API key provided", "invalid_api_key")
    return found
