"""One gateway request's facts, the streaming response that notices a client leaving, and what endpoints need
from the app that runs them (``Host``), so ``serve.endpoints`` and ``serve.app`` do not import each other."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from tierswitch.serve.auth import ANONYMOUS
from tierswitch.types import Routed

if TYPE_CHECKING:
    from tierswitch.serve.observe import GatewayMetrics
    from tierswitch.serve.state import Gateway

__all__ = ["Call", "ClientGone", "DisconnectAwareStream", "Host"]

T = TypeVar("T")


class ClientGone(Exception):
    """The client disconnected before its answer was ready; the upstream call was cancelled."""


@dataclass(slots=True)
class Call:
    """One request's facts, for its headers, metrics and access-log line."""

    request_id: str
    endpoint: str
    method: str
    started: float
    key: str = ANONYMOUS
    route: str = ""
    tier: str = ""
    cached: bool = False
    cost: float = 0.0
    tokens: int | None = None
    score: float | None = None
    reason: str = ""
    status: int = 200
    error: str = ""
    stream: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def took(self, routed: Routed) -> None:
        self.tier, self.cached, self.cost, self.score = routed.tier, routed.cached, routed.cost, routed.score
        self.tokens = None if routed.usage is None else routed.usage.total_tokens
        self.reason = next((s.detail for s in routed.trace if s.kind == "decide"), "")

    def headers(self) -> dict[str, str]:
        out = {"x-tierswitch-request-id": self.request_id}
        if self.tier:
            out["x-tierswitch-tier"] = self.tier
        if self.tier and not self.stream:  # a stream's cost is known at its end: see its last chunk
            out["x-tierswitch-cost"] = repr(self.cost)
            out["x-tierswitch-cached"] = "true" if self.cached else "false"
        if self.route:
            out["x-tierswitch-route"] = self.route
        return out


class DisconnectAwareStream(StreamingResponse):
    """A streaming response that stops its body iterator the moment the client disconnects (not at the next
    write), so a streamed upstream call is cancelled while it waits for its next token."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        stream = asyncio.ensure_future(self.stream_response(send))
        gone = asyncio.ensure_future(self.listen_for_disconnect(receive))
        try:
            await asyncio.wait((stream, gone), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (stream, gone):
                task.cancel()
        if stream.done() and not stream.cancelled() and stream.exception() is not None:
            exc = stream.exception()
            if not isinstance(exc, OSError):
                raise exc  # type: ignore[misc]


class Host(Protocol):
    """What the endpoints use of the ``GatewayApp`` that serves them."""

    gateway: Gateway
    metrics: GatewayMetrics
    draining: bool
    inflight: int

    def finish(self, call: Call) -> None: ...

    async def body(self, request: Request, limit: int) -> Any: ...

    async def run(self, request: Request, work: Coroutine[Any, Any, T], timeout_s: float) -> T: ...
