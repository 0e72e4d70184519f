"""A recorded-LLM server: the OpenAI chat-completions protocol over real HTTP, answering from recorded answers.

``POST /v1/chat/completions`` (non-streaming, and streaming as server-sent events ending ``data: [DONE]``, with the
usage chunk when ``stream_options.include_usage``), ``GET /v1/models``. The answer is looked up by the text of the
last user message in a ``RecordedTable`` (default: the shipped GSM8K table with real Mixtral and GPT-4 answers).

Tokens (a stated, deterministic approximation, the same ``ceil(chars / 4)`` the replay benchmark prices with):
``prompt_tokens`` = ceil(len(conversation text) / 4), where the conversation text is the messages' text joined by
newlines; ``completion_tokens`` = ceil(len(answer) / 4), and a stream sends the answer in 4-character pieces, one
per token. ``logprobs`` (when asked for) are SYNTHETIC: a deterministic hash of (model, prompt, token index) mapped
into [-0.5, 0]; they carry no information about correctness and exist only to exercise the protocol.

Latency model: ``(first_token_s + per_token_s x completion_tokens) x scale`` (a stream waits ``first_token_s`` before
the first piece and ``per_token_s`` before each piece); ``scale=0`` for tests.

Faults on demand, for the next requests (``server.faults.push(kind, times)``) or per request (header
``x-recorded-fault: kind``): ``429`` (with ``Retry-After``), ``500``, ``503``, ``invalid_json``, ``no_choices``,
``no_usage``, ``truncated`` (a stream cut before ``[DONE]``; a body cut in half), ``hang`` (no answer until the
server stops, or ``hang_s``).

Run one: ``python -m tierswitch.testing.recorded_llm --model mixtral --port 8001`` (the command-line module).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from collections import deque
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tierswitch.testing.table import RecordedTable, load_gsm8k
from tierswitch.tiers.chat import approx_tokens_of, conversation_text, last_user_text

__all__ = ["DEFAULT_LATENCY", "FAULTS", "Faults", "LatencyModel", "build_app", "gsm8k_app", "pieces"]

FAULTS = ("429", "500", "503", "invalid_json", "no_choices", "no_usage", "truncated", "hang")
#: the per-token latencies the issue's seed table gives: a small model ~15 ms/token, the full one ~45 ms/token
DEFAULT_LATENCY = {"mixtral": (0.015, 0.1), "gpt4": (0.045, 0.3)}


@dataclass(frozen=True, slots=True)
class LatencyModel:
    per_token_s: float = 0.015
    first_token_s: float = 0.1
    scale: float = 1.0

    def total(self, tokens: int) -> float:
        return (self.first_token_s + self.per_token_s * tokens) * self.scale


class Faults:
    """A thread-safe queue of faults for the next requests (each ``push`` applies to ``times`` requests)."""

    def __init__(self) -> None:
        self._queue: deque[tuple[str, float]] = deque()
        self._lock = threading.Lock()

    def push(self, kind: str, times: int = 1, retry_after: float = 0.0) -> None:
        if kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r}; known: {FAULTS}")
        with self._lock:
            self._queue.extend([(kind, retry_after)] * times)

    def take(self) -> tuple[str, float] | None:
        with self._lock:
            return self._queue.popleft() if self._queue else None

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()


def pieces(text: str) -> list[str]:
    """The answer in 4-character pieces: one per approximate token (so len(pieces) == ceil(len/4))."""
    return [text[i:i + 4] for i in range(0, len(text), 4)]


def _logprobs(model: str, prompt: str, toks: list[str]) -> dict[str, Any]:
    seed = hashlib.blake2b(f"{model}\0{prompt}".encode(), digest_size=8).digest()
    content = []
    for i, tok in enumerate(toks):
        h = hashlib.blake2b(seed + i.to_bytes(4, "little"), digest_size=2).digest()
        content.append({"token": tok, "logprob": -0.5 * int.from_bytes(h, "little") / 65535, "bytes": None,
                        "top_logprobs": []})
    return {"content": content}


def _error(status: int, message: str, kind: str, code: str | None = None,
           headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "param": None, "code": code}}, status,
                        headers=dict(headers or {}))


class _State:
    def __init__(self, table: RecordedTable, models: Mapping[str, LatencyModel], hang_s: float) -> None:
        self.table, self.models, self.hang_s = table, dict(models), hang_s
        self.faults = Faults()
        self.requests = 0
        self.last_headers: dict[str, str] = {}
        self.stopping: asyncio.Event | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.lock = threading.Lock()


def build_app(table: RecordedTable, models: Mapping[str, LatencyModel], hang_s: float = 300.0) -> Starlette:
    """The ASGI app serving ``models`` (served name -> latency model; the name is the table column) from ``table``.
    ``app.state.recorded`` holds the fault queue (``.faults``) and the request count (``.requests``)."""
    state = _State(table, models, hang_s)

    async def list_models(request: Request) -> Response:
        data = [{"id": m, "object": "model", "created": 0, "owned_by": "tierswitch-recorded"} for m in state.models]
        return JSONResponse({"object": "list", "data": data})

    async def hang() -> None:
        if state.stopping is None:
            state.stopping = asyncio.Event()
            state.loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(state.stopping.wait(), state.hang_s)
        except TimeoutError:
            pass

    async def completions(request: Request) -> Response:
        with state.lock:
            state.requests += 1
            state.last_headers = dict(request.headers)
        fault = state.faults.take()
        kind, retry_after = fault if fault else (request.headers.get("x-recorded-fault", ""), 0.0)
        if kind == "429":
            return _error(429, "Rate limit reached (recorded fault)", "rate_limit_error", "rate_limit_exceeded",
                          {"retry-after": f"{retry_after:g}"})
        if kind in ("500", "503"):
            return _error(int(kind), "The server had an error (recorded fault)", "server_error")
        if kind == "hang":
            await hang()
            return _error(504, "hung (recorded fault)", "server_error")
        try:
            body = json.loads(await request.body())
        except ValueError:
            return _error(400, "We could not parse the JSON body of your request.", "invalid_request_error")
        if not isinstance(body, dict):
            return _error(400, "The request body must be a JSON object.", "invalid_request_error")
        model = body.get("model")
        if model not in state.models:
            return _error(404, f"The model `{model}` does not exist (serving {sorted(state.models)}).",
                          "invalid_request_error", "model_not_found")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
            return _error(400, "'messages' must be a non-empty array of message objects.", "invalid_request_error")
        prompt = last_user_text(messages)
        row = state.table.get(prompt)
        if row is None or model not in row.answers:
            return _error(400, f"no recorded answer for this prompt ({prompt[:60]!r})", "invalid_request_error",
                          "prompt_not_recorded")
        answer = row.answers[model]
        toks = pieces(answer)
        usage = {"prompt_tokens": approx_tokens_of(conversation_text(messages)), "completion_tokens": len(toks)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        logprobs = _logprobs(model, prompt, toks) if body.get("logprobs") else None
        latency = state.models[model]
        if body.get("stream"):
            include = isinstance(body.get("stream_options"), dict) and body["stream_options"].get("include_usage")
            return StreamingResponse(_stream(model, toks, usage if include else None, logprobs, latency, kind),
                                     media_type="text/event-stream")
        if latency.scale:
            await asyncio.sleep(latency.total(len(toks)))
        payload: dict[str, Any] = {
            "id": f"chatcmpl-rec-{state.requests}", "object": "chat.completion", "created": 0, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "logprobs": logprobs,
                         "finish_reason": "stop"}],
            "usage": usage, "system_fingerprint": "recorded"}
        if kind == "no_choices":
            payload["choices"] = []
        if kind == "no_usage":
            del payload["usage"]
        text = json.dumps(payload)
        if kind == "invalid_json":
            text = "{'not': json," + text
        elif kind == "truncated":
            text = text[: len(text) // 2]
        return Response(text, media_type="application/json")

    app = Starlette(routes=[Route("/v1/models", list_models), Route("/v1/chat/completions", completions,
                                                                     methods=["POST"])])
    app.state.recorded = state
    return app


async def _stream(model: str, toks: list[str], usage: dict[str, int] | None, logprobs: dict[str, Any] | None,
                  latency: LatencyModel, fault: str) -> AsyncIterator[str]:
    def event(choices: list[dict[str, Any]], extra: dict[str, Any] | None = None) -> str:
        chunk = {"id": "chatcmpl-rec", "object": "chat.completion.chunk", "created": 0, "model": model,
                 "choices": choices, **(extra or {})}
        return f"data: {json.dumps(chunk)}\n\n"

    yield event([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
    if latency.scale:
        await asyncio.sleep(latency.first_token_s * latency.scale)
    cut = len(toks) // 2 if fault == "truncated" else None
    for i, tok in enumerate(toks):
        if i == cut:
            return  # the connection ends without [DONE]
        if latency.scale and i:
            await asyncio.sleep(latency.per_token_s * latency.scale)
        lp = {"content": [logprobs["content"][i]]} if logprobs else None
        yield event([{"index": 0, "delta": {"content": tok}, "logprobs": lp, "finish_reason": None}])
    yield event([{"index": 0, "delta": {}, "finish_reason": "stop"}])
    if usage is not None and fault != "no_usage":
        yield event([], {"usage": usage})
    yield "data: [DONE]\n\n"


def gsm8k_app(models: Mapping[str, LatencyModel] | None = None, scale: float = 1.0) -> Starlette:
    """The app over the shipped GSM8K table, serving ``mixtral`` and ``gpt4`` with the default latencies."""
    if models is None:
        models = {m: LatencyModel(p, f, scale) for m, (p, f) in DEFAULT_LATENCY.items()}
    return build_app(load_gsm8k(), models)
