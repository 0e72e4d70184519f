"""Tier functions the gateway tests configure as ``kind: python`` tiers (``tests.gateway_tiers:NAME``).

``base``/``full`` answer at once (base is confident only on "easy" prompts, so the cascade escalates the rest);
``broken`` always fails; ``slow`` takes ``$GW_SLOW_S`` seconds. ``upstream``/``upstream_stream`` call a real HTTP
server at ``$GW_UPSTREAM_URL`` (tests/gateway_upstream.py) with httpx, one client per event loop.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from typing import Any

import httpx

_clients: dict[int, httpx.AsyncClient] = {}


def _text(payload: Any) -> str:
    if isinstance(payload, dict):
        payload = payload.get("messages", payload.get("text", payload))
    if isinstance(payload, list):
        return str(payload[-1].get("content", "")) if payload and isinstance(payload[-1], dict) else str(payload)
    return str(payload)


def base(payload: Any) -> dict[str, Any]:
    text = _text(payload)
    return {"output": f"base: {text}", "confidence": 0.95 if "easy" in text else 0.2}


async def full(payload: Any) -> dict[str, Any]:
    return {"output": f"full: {_text(payload)}", "confidence": 0.99}


async def full_stream(payload: Any) -> AsyncIterator[str]:
    for word in f"full: {_text(payload)}".split(" "):
        yield word + " "


def broken(payload: Any) -> Any:
    raise RuntimeError("this tier always fails")


async def slow(payload: Any) -> str:
    """Answers after ``$GW_SLOW_S`` s; writes ``$GW_MARK_DIR/slow-cancelled`` when it is cancelled first."""
    try:
        await asyncio.sleep(float(os.environ.get("GW_SLOW_S", "2")))
    except asyncio.CancelledError:
        if os.environ.get("GW_MARK_DIR"):
            with open(os.path.join(os.environ["GW_MARK_DIR"], "slow-cancelled"), "a") as f:
                f.write(_text(payload) + "\n")
        raise
    return "slow answer"


def _client() -> httpx.AsyncClient:
    loop = id(asyncio.get_running_loop())
    client = _clients.get(loop)
    if client is None:
        client = _clients[loop] = httpx.AsyncClient(base_url=os.environ["GW_UPSTREAM_URL"], timeout=30,
                                                    limits=httpx.Limits(max_connections=200,
                                                                        max_keepalive_connections=200))
    return client


async def upstream(payload: Any) -> str:
    body = {"model": "up", **(payload if isinstance(payload, dict) else {"messages": payload})}
    response = await _client().post("/v1/chat/completions", json=body)
    response.raise_for_status()
    return str(response.json()["choices"][0]["message"]["content"])


async def upstream_stream(payload: Any) -> AsyncIterator[str]:
    body = {"model": "up", "stream": True, **(payload if isinstance(payload, dict) else {"messages": payload})}
    async with _client().stream("POST", "/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            delta = json.loads(line[6:])["choices"][0]["delta"].get("content")
            if delta:
                yield delta


async def slow_stream(payload: Any) -> AsyncIterator[str]:
    """200 words, one every 50 ms; writes ``$GW_MARK_DIR/stream-closed`` when the stream is closed early."""
    sent = 0
    try:
        for i in range(200):
            await asyncio.sleep(0.05)
            sent += 1
            yield f"w{i} "
    finally:
        if sent < 200 and os.environ.get("GW_MARK_DIR"):
            with open(os.path.join(os.environ["GW_MARK_DIR"], "stream-closed"), "w") as f:
                f.write(str(sent))


_sync_client: httpx.Client | None = None


def upstream_sync(payload: Any) -> str:
    """``upstream`` with a blocking httpx client (runs in the router's executor thread, no event loop hop)."""
    global _sync_client
    if _sync_client is None:
        _sync_client = httpx.Client(base_url=os.environ["GW_UPSTREAM_URL"], timeout=30,
                                    limits=httpx.Limits(max_connections=200, max_keepalive_connections=200))
    body = {"model": "up", **(payload if isinstance(payload, dict) else {"messages": payload})}
    response = _sync_client.post("/v1/chat/completions", json=body)
    response.raise_for_status()
    return str(response.json()["choices"][0]["message"]["content"])
