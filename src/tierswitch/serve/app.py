"""The gateway's ASGI app (Starlette): OpenAI-compatible chat completions and generic routing over a ``Router``.

``GatewayApp(config_path)`` is the app; ``create_app()`` builds it from ``$TIERSWITCH_SERVE_CONFIG`` (uvicorn's
factory mode, one app per worker process). Endpoints live in ``serve.endpoints``; this module holds what every
request shares: the draining switch, auth, body limits, the time limit and client-disconnect cancellation, error
bodies, metrics and the access log.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from tierswitch.serve.auth import identify
from tierswitch.serve.call import Call, ClientGone
from tierswitch.serve.errors import ApiError, api_error_of
from tierswitch.serve.observe import LOG_ENV, GatewayMetrics, access_log, log, setup_logging
from tierswitch.serve.state import Gateway, ServingRouter, Snapshot

__all__ = ["Call", "ClientGone", "GatewayApp", "create_app"]

T = TypeVar("T")
CONFIG_ENV = "TIERSWITCH_SERVE_CONFIG"


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


class GatewayApp:
    """The gateway over the config at ``path`` (loaded now: a broken config fails at startup)."""

    def __init__(self, path: str | Path, *, handle_signals: bool = True) -> None:
        self.gateway = Gateway(path)
        self.gateway.current()
        self.metrics = GatewayMetrics(self._reload_state)
        from tierswitch.metrics import RouterMetrics  # the router's own metrics, in the gateway's registry

        RouterMetrics(ServingRouter(self.gateway), self.metrics.registry, name="auto")
        self.inflight = 0
        self.draining = False
        self.handle_signals = handle_signals
        self._drained = asyncio.Event()
        from tierswitch.serve.endpoints import routes

        self.app = Starlette(routes=[Route(p, self._wrap(name, fn, auth), methods=[m])
                                     for p, m, name, fn, auth in routes(self)], lifespan=self._lifespan)
        self.app.add_exception_handler(404, self._not_found)
        self.app.add_exception_handler(405, self._not_found)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)

    def _reload_state(self) -> tuple[int, bool]:
        return self.gateway.reloading.reloads, self.gateway.reloading.last_error is not None

    # -- lifecycle ------------------------------------------------------------------------------------------
    @asynccontextmanager
    async def _lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        settings = self.gateway.current().settings
        # the loop's default executor (readiness checks, and any sync work the router hands to the loop's default
        # executor): the default, min(32, cpus + 4), would cap a 2-core gateway at 6 such calls in flight
        asyncio.get_running_loop().set_default_executor(
            ThreadPoolExecutor(settings.threads, thread_name_prefix="tierswitch-gateway"))
        interval = settings.reload_interval_s
        if interval > 0:
            self.gateway.reloading.watch(interval)
        if self.handle_signals:
            self._install_drain()
        yield
        await self.gateway.close()

    def _install_drain(self) -> None:
        """SIGTERM/SIGINT first drain: new requests get 503 (and /readyz fails), in-flight ones finish (for up to
        ``gateway.drain_timeout_s``), then uvicorn's own handler shuts the server down."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous = signal.getsignal(sig)
            if not callable(previous):
                continue

            def handler(signum: int, frame: Any, previous: Callable[..., Any] = previous) -> None:
                if self.draining:  # a second signal: stop now
                    previous(signum, frame)
                    return
                self.draining = True
                log.info(json.dumps({"event": "draining", "inflight": self.inflight}))
                loop.call_soon_threadsafe(lambda: loop.create_task(self._drain_then(previous, signum, frame)))

            try:
                signal.signal(sig, handler)
            except ValueError:  # not the main thread (an embedded server): no draining switch
                return

    async def _drain_then(self, previous: Callable[..., Any], signum: int, frame: Any) -> None:
        deadline = self.gateway.current().settings.drain_timeout_s
        if self.inflight > 0:
            self._drained.clear()
            try:
                await asyncio.wait_for(self._drained.wait(), deadline)
            except asyncio.TimeoutError:
                log.warning(json.dumps({"event": "drain_timeout", "inflight": self.inflight}))
        previous(signum, frame)

    # -- the shared request path ----------------------------------------------------------------------------
    def _wrap(self, endpoint: str, fn: Callable[[Request, Call, Snapshot], Awaitable[Response]],
              auth: bool) -> Callable[[Request], Awaitable[Response]]:
        always_open = endpoint in ("healthz", "metrics")

        async def handle(request: Request) -> Response:
            call = Call(uuid.uuid4().hex[:24], endpoint, request.method, time.perf_counter())
            self.inflight += 1
            self.metrics.inflight.inc()
            deferred = False
            try:
                if self.draining and not always_open:
                    raise ApiError(503, "the gateway is shutting down; retry on another replica", "shutting_down",
                                   {"connection": "close"})
                snap = self.gateway.current()
                if auth:
                    call.key = identify(snap.settings.keys, request.headers.get("authorization"))
                response = await fn(request, call, snap)
                deferred = isinstance(response, StreamingResponse)
            except ClientGone:
                call.status, call.error = 499, "client_closed"
                response = Response(status_code=499)
            except Exception as exc:
                err = api_error_of(exc)
                if err is not exc and err.status >= 500 and err.code == "internal_error":
                    log.exception("gateway: %s %s failed", request.method, request.url.path)
                call.status, call.error = err.status, err.code
                response = JSONResponse(err.body(), err.status, headers={**call.headers(), **err.headers})
            if not deferred:
                self.finish(call)
            return response

        return handle

    def finish(self, call: Call) -> None:
        """Account for a finished request (streams call this when their last byte is out)."""
        elapsed = time.perf_counter() - call.started
        self.inflight -= 1
        self.metrics.inflight.dec()
        if self.inflight == 0:
            self._drained.set()
        self.metrics.observe(call.endpoint, call.status, call.route, call.tier, call.cached, call.cost, elapsed)
        record = {"event": "request", "request_id": call.request_id, "method": call.method,
                  "endpoint": call.endpoint, "status": call.status, "latency_ms": round(elapsed * 1e3, 3),
                  "key": call.key, "route": call.route, "tier": call.tier, "cached": call.cached, "cost": call.cost,
                  "tokens": call.tokens, "score": call.score, "reason": call.reason, "stream": call.stream}
        if call.error:
            record["error"] = call.error
        record.update(call.extra)
        access_log(record)

    async def body(self, request: Request, limit: int) -> Any:
        """The request's JSON body, refused with 413 over ``limit`` bytes (before reading it when the length is
        declared) and 400 when it is not JSON."""
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise ApiError(413, f"the request body is {declared} bytes, over the gateway's limit of {limit} "
                                "(gateway.limits.max_body_bytes)", "request_too_large")
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError(413, f"the request body is over the gateway's limit of {limit} bytes "
                                    "(gateway.limits.max_body_bytes)", "request_too_large")
            chunks.append(chunk)
        try:
            return json.loads(b"".join(chunks))
        except ValueError as exc:
            raise ApiError(400, f"the request body is not valid JSON ({exc})", "invalid_json") from exc

    async def run(self, request: Request, work: Coroutine[Any, Any, T], timeout_s: float) -> T:
        """Await ``work`` within ``timeout_s`` (504 past it); if the client disconnects first, cancel it."""
        task = asyncio.ensure_future(work)
        gone = asyncio.ensure_future(_disconnected(request.receive))
        try:
            done, _ = await asyncio.wait((task, gone), timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
            if not task.done():
                task.cancel()
        if task in done:
            return task.result()
        if gone in done:
            raise ClientGone()
        raise ApiError(504, f"no answer within the gateway's time limit of {timeout_s:g}s "
                            "(gateway.limits.timeout_s)", "timeout")

    async def _not_found(self, request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 404)
        message = (f"no endpoint {request.method} {request.url.path}" if status == 404
                   else f"{request.method} is not allowed on {request.url.path}")
        return JSONResponse(ApiError(status, message, "not_found" if status == 404 else "method_not_allowed").body(),
                            status)


def create_app() -> GatewayApp:
    """uvicorn factory (``--workers``): each worker process builds its own gateway from ``$TIERSWITCH_SERVE_CONFIG``."""
    path = os.environ.get(CONFIG_ENV)
    if not path:
        raise RuntimeError(f"set {CONFIG_ENV} to the gateway's config file")

    setup_logging(os.environ.get(LOG_ENV, "1") != "0")
    return GatewayApp(path)


logging.getLogger("tierswitch.serve").addHandler(logging.NullHandler())
