"""Every gateway error as an OpenAI-shaped body ``{"error": {"message", "type", "code"}}`` with its HTTP status."""

from __future__ import annotations

import asyncio
from typing import Any

from tierswitch.errors import (
    AllTiersFailed,
    ConfigError,
    InvalidInput,
    NoCapableTier,
    TierFailure,
    TierswitchError,
    TierTimeout,
)

__all__ = ["ApiError", "api_error_of", "error_body"]

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "invalid_request_error",
          405: "invalid_request_error", 413: "invalid_request_error", 429: "rate_limit_error",
          500: "server_error", 502: "upstream_error", 503: "service_unavailable", 504: "timeout_error"}


class ApiError(Exception):
    """An error answer: ``status``, a message saying what to do, and a machine-readable ``code``."""

    def __init__(self, status: int, message: str, code: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers or {}

    @property
    def type(self) -> str:
        return _TYPES.get(self.status, "server_error")

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.type, self.code)


def error_body(message: str, type_: str, code: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "code": code, "param": None}}


def api_error_of(exc: BaseException) -> ApiError:
    """The answer for an exception raised while routing (``ApiError`` passes through)."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return ApiError(504, "the request took longer than the gateway's time limit (gateway.limits.timeout_s)",
                        "timeout")
    if isinstance(exc, (InvalidInput, ConfigError)):
        return ApiError(400, str(exc), "invalid_input")
    if isinstance(exc, NoCapableTier):
        return ApiError(400, str(exc), "no_capable_tier")
    if isinstance(exc, AllTiersFailed):
        if exc.failures and all(isinstance(f, TierTimeout) for f in exc.failures):
            return ApiError(504, str(exc), "upstream_timeout")
        return ApiError(502, str(exc), "upstream_failed")
    if isinstance(exc, TierTimeout):
        return ApiError(504, str(exc), "upstream_timeout")
    if isinstance(exc, TierFailure):
        return ApiError(502, str(exc), "upstream_failed")
    if isinstance(exc, TierswitchError):
        return ApiError(500, str(exc), "internal_error")
    return ApiError(500, f"internal error ({type(exc).__name__}); see the gateway's log", "internal_error")
