"""The gateway's endpoints: chat completions (plain and SSE), models, generic routing, feedback, metrics, health.

Each is ``async fn(request, call, snapshot) -> Response``; ``GatewayApp`` wraps them with auth, draining, errors,
metrics and the access log.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tierswitch.router import Router
from tierswitch.serve.call import Call, DisconnectAwareStream, Host
from tierswitch.serve.errors import ApiError, api_error_of
from tierswitch.serve.settings import AUTO
from tierswitch.serve.shapes import chat_payload, chunk, completion, info, routed_json, usage_json
from tierswitch.serve.state import Snapshot
from tierswitch.serve.stream import stream_answer
from tierswitch.types import Routed

__all__ = ["routes"]


def _route(snap: Snapshot, model: str) -> Router:
    router = snap.routes.get(model)
    if router is None:
        raise ApiError(404, f"the model {model!r} does not exist; use {AUTO}, a tier name or a route name "
                            f"({sorted(snap.routes)})", "model_not_found")
    return router


def _sse(data: Any) -> bytes:
    return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"


def routes(gw: Host) -> list[tuple[str, str, str, Any, bool]]:
    """(path, method, endpoint name, handler, needs an API key) for every endpoint."""

    async def answered(call: Call, snap: Snapshot, routed: Routed) -> None:
        call.took(routed)
        if routed.request_id:
            gw.gateway.remember(call.request_id, snap.routes[call.route], routed.request_id)
        await snap.limiter.spend(call.key, snap.settings.limits_for(call.key), routed.cost)

    async def chat(request: Request, call: Call, snap: Snapshot) -> Response:
        model, payload, stream, include_usage = chat_payload(await gw.body(request, snap.settings.max_body_bytes))
        router = _route(snap, model)
        call.route, call.stream = model, stream
        await snap.limiter.admit(call.key, snap.settings.limits_for(call.key))
        meta = {"api_key": call.key, "gateway_request_id": call.request_id}
        if stream:
            pinned = snap.pinned.get(model)
            if pinned is not None:
                call.tier = pinned
            return DisconnectAwareStream(events(call, snap, router, payload, pinned, include_usage, meta),
                                         media_type="text/event-stream",
                                         headers={**call.headers(), "cache-control": "no-cache"})
        routed = await gw.run(request, router.acall(payload, **meta), snap.settings.timeout_s)
        await answered(call, snap, routed)
        return JSONResponse(completion(routed, call.request_id, model), headers=call.headers())

    async def events(call: Call, snap: Snapshot, router: Router, payload: Any, pinned: str | None,
                     include_usage: bool, meta: dict[str, Any]) -> AsyncIterator[bytes]:
        label = pinned or call.route
        first = True
        try:
            routed: Routed | None = None
            async with asyncio.timeout(snap.settings.timeout_s):
                async for item in stream_answer(router, payload, pinned, **meta):
                    if isinstance(item, str):
                        delta = {"role": "assistant", "content": item} if first else {"content": item}
                        first = False
                        yield _sse(chunk(call.request_id, label, delta))
                    else:
                        routed = item
            if routed is None:
                raise ApiError(502, "the stream ended without a final answer", "upstream_failed")
            await answered(call, snap, routed)
            extra: dict[str, Any] = {"tierswitch": info(routed, call.request_id, call.route)}
            if include_usage:
                extra["usage"] = usage_json(routed.usage) or {"prompt_tokens": 0, "completion_tokens": 0,
                                                                "total_tokens": 0}
            yield _sse(chunk(call.request_id, routed.tier, {}, "stop", **extra))
            yield b"data: [DONE]\n\n"
        except asyncio.CancelledError:  # the client went away: the upstream stream is closed with this task
            call.status, call.error = 499, "client_closed"
            raise
        except Exception as exc:  # headers are out: the error is the last event, and the stream ends cleanly
            err = api_error_of(exc) if not isinstance(exc, TimeoutError) else ApiError(
                504, f"the stream took longer than the gateway's limit of {snap.settings.timeout_s:g}s", "timeout")
            call.status, call.error = err.status, err.code
            yield _sse(err.body())
        finally:
            gw.finish(call)

    async def models(request: Request, call: Call, snap: Snapshot) -> Response:
        data = [{"id": name, "object": "model", "created": 0, "owned_by": "tierswitch",
                 "tierswitch": {"kind": "auto" if name == AUTO else "tier" if name in snap.pinned else "route"}}
                for name in snap.routes]
        return JSONResponse({"object": "list", "data": data})

    async def route(request: Request, call: Call, snap: Snapshot) -> Response:
        body = await gw.body(request, snap.settings.max_body_bytes)
        if not isinstance(body, dict) or "input" not in body:
            raise ApiError(400, "the body must be a JSON object with `input` (and optionally `model`, `modality`)",
                           "invalid_request")
        model = body.get("model", AUTO)
        modality = body.get("modality")
        if not isinstance(model, str) or (modality is not None and not isinstance(modality, str)):
            raise ApiError(400, "`model` and `modality` must be strings", "invalid_request")
        router = _route(snap, model)
        call.route = model
        await snap.limiter.admit(call.key, snap.settings.limits_for(call.key))
        routed = await gw.run(request, router.acall(body["input"], modality=modality, api_key=call.key),
                              snap.settings.timeout_s)
        await answered(call, snap, routed)
        return JSONResponse(routed_json(routed, call.request_id, model), headers=call.headers())

    async def feedback(request: Request, call: Call, snap: Snapshot) -> Response:
        body = await gw.body(request, snap.settings.max_body_bytes)
        if not isinstance(body, dict) or not isinstance(body.get("request_id"), str):
            raise ApiError(400, "the body must be {request_id, reward or quality}", "invalid_request")
        values = {k: body.get(k) for k in ("reward", "quality")}
        for name, value in values.items():
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not math.isfinite(value)):
                raise ApiError(400, f"`{name}` must be a finite number", "invalid_request")
        if values["reward"] is None and values["quality"] is None:
            raise ApiError(400, "give `reward` or `quality`", "invalid_request")
        if values["quality"] is not None and not 0.0 <= values["quality"] <= 1.0:
            raise ApiError(400, "`quality` must be in [0, 1]", "invalid_request")
        known = gw.gateway.recall(body["request_id"])
        if known is None:
            raise ApiError(404, f"unknown request id {body['request_id']!r} (this gateway process answered no such "
                                "request, or it aged out)", "unknown_request")
        router, router_id = known
        used = router.feedback(router_id, values["reward"], quality=values["quality"])
        return JSONResponse({"request_id": body["request_id"], "accepted": bool(used)})

    async def metrics(request: Request, call: Call, snap: Snapshot) -> Response:
        return Response(gw.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    async def healthz(request: Request, call: Call, snap: Snapshot) -> Response:
        reloading = gw.gateway.reloading
        error = reloading.last_error
        return JSONResponse({"status": "draining" if gw.draining else "ok", "reloads": reloading.reloads,
                             "config_error": None if error is None else str(error), "inflight": gw.inflight,
                             "pid": os.getpid()})

    async def readyz(request: Request, call: Call, snap: Snapshot) -> Response:
        problems = await asyncio.get_running_loop().run_in_executor(None, _unready, snap)
        if problems:
            raise ApiError(503, "not ready: " + "; ".join(problems), "not_ready")
        return JSONResponse({"status": "ready", "tiers": list(snap.router.tier_order)})

    return [("/v1/chat/completions", "POST", "chat", chat, True), ("/v1/models", "GET", "models", models, True),
            ("/v1/route", "POST", "route", route, True), ("/v1/feedback", "POST", "feedback", feedback, True),
            ("/metrics", "GET", "metrics", metrics, False), ("/healthz", "GET", "healthz", healthz, False),
            ("/readyz", "GET", "readyz", readyz, False)]


def _unready(snap: Snapshot) -> list[str]:
    """What is not reachable: the cache (a Redis PING) and every tier with a ``ready()`` check."""
    problems = []
    cache = snap.router.cache
    client = getattr(cache, "client", None)
    if cache is not None and client is not None:
        try:
            cache.run(client.ping)  # type: ignore[attr-defined]
        except Exception as exc:
            problems.append(f"cache: {exc}")
    for name, tier in snap.router.tiers.items():
        tier = getattr(tier, "inner", tier)  # under a reliability guard
        base_url = getattr(tier, "base_url", None)
        if isinstance(base_url, str):  # an HTTP endpoint: any HTTP answer means it is reachable
            import httpx

            try:
                httpx.get(base_url + "/models", timeout=1.0)
            except httpx.HTTPError as exc:
                problems.append(f"tier {name}: {base_url} unreachable ({type(exc).__name__})")
        ready = getattr(tier, "ready", None)
        if callable(ready):
            try:
                if not ready():
                    problems.append(f"tier {name}: not ready")
            except Exception as exc:
                problems.append(f"tier {name}: {type(exc).__name__}: {exc}")
    return problems
