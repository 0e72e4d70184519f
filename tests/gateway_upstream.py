"""A minimal OpenAI-compatible upstream for the gateway tests and benchmark (a real HTTP server under uvicorn).

It answers ``echo: LAST_USER_MESSAGE`` at once (``$UP_DELAY_S`` before answering, ``$UP_CHUNK_DELAY_S`` between
streamed words) and counts the chat calls it received (``GET /calls``), so tests can see coalescing at the
upstream. Run: ``python -m uvicorn tests.gateway_upstream:app --port N``.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

DELAY_S = float(os.environ.get("UP_DELAY_S", "0"))
CHUNK_DELAY_S = float(os.environ.get("UP_CHUNK_DELAY_S", "0"))
WORDS = int(os.environ.get("UP_WORDS", "0"))
calls = 0


def _answer(body: dict[str, Any]) -> str:
    last = body["messages"][-1].get("content", "")
    extra = " ".join(f"w{i}" for i in range(WORDS))
    return f"echo: {last} {extra}".strip()


async def chat(request: Request) -> Response:
    global calls
    calls += 1
    body = json.loads(await request.body())
    if DELAY_S:
        await asyncio.sleep(DELAY_S)
    text = _answer(body)
    if not body.get("stream"):
        return JSONResponse({"id": "up", "object": "chat.completion", "created": int(time.time()), "model": "up",
                             "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                          "finish_reason": "stop"}],
                             "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}})

    async def events() -> AsyncIterator[bytes]:
        for word in text.split(" "):
            if CHUNK_DELAY_S:
                await asyncio.sleep(CHUNK_DELAY_S)
            data = {"id": "up", "object": "chat.completion.chunk", "created": 0, "model": "up",
                    "choices": [{"index": 0, "delta": {"content": word + " "}, "finish_reason": None}]}
            yield f"data: {json.dumps(data)}\n\n".encode()
        yield b"data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


async def count(request: Request) -> Response:
    return JSONResponse({"calls": calls})


app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"]), Route("/calls", count)])
