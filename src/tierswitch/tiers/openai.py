"""``OpenAITier``: one language-model endpoint speaking the OpenAI chat-completions protocol over httpx.

Works with any OpenAI-compatible server (vLLM, SGLang, llama.cpp server, Ollama, TGI, hosted APIs). Cost comes from
the response's ``usage`` x per-million-token prices, confidence from ``logprobs`` when the server returns them,
429/5xx are retried with backoff honouring ``Retry-After``, 4xx become ``UpstreamRejected`` with the server's
message. Both a sync (``httpx.Client``) and an async (``httpx.AsyncClient``) path, pooled with keep-alive and
created on first use; ``astream`` passes server-sent events through delta by delta.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

import httpx

from tierswitch.errors import (
    ConfigError,
    InvalidMessages,
    TierFailure,
    TierTimeout,
    TransientTierError,
    UpstreamProtocolError,
    UpstreamUnavailable,
)
from tierswitch.tiers.base import Capabilities, CostModel, RawOutput, Tier, make_prediction
from tierswitch.tiers.chat import approx_tokens_of, conversation_text, normalize, parse_label
from tierswitch.tiers.llm_confidence import check_reduction, reduce_logprobs
from tierswitch.tiers.openai_config import openai_kwargs
from tierswitch.tiers.openai_protocol import Completion, StreamState, TokenPrices, error_for, parse_completion
from tierswitch.tiers.openai_stream import stream_completion
from tierswitch.types import Prediction, Usage
from tierswitch.validation import finite, positive, rebased

__all__ = ["OpenAITier", "TokenPrices", "parse_label"]

log = logging.getLogger(__name__)


class OpenAITier(Tier):
    """A chat-completions endpoint as a tier (see the module docstring). ``base_url`` is the API root, e.g.
    ``http://127.0.0.1:8000/v1``; ``params`` are default sampling parameters (a request dict's own override them);
    the API key is read from the environment variable ``api_key_env`` on first use, never from a config file.

    ``labels`` makes it a closed-label classifier: the answer is parsed into one of them (an answer naming none is
    an ``UpstreamProtocolError``, so the router falls back and nothing is cached). ``confidence`` reduces token
    logprobs (``mean``/``min``/``first``; None: no confidence); when set, ``logprobs: true`` is requested unless
    ``params`` says otherwise. ``cache_sampled`` allows caching answers sampled with temperature > 0 and no seed.
    ``version`` defaults to the model name (``:`` replaced), so a new model never serves old cached answers.
    """

    is_async = True
    streams = True

    def __init__(
        self,
        name: str,
        base_url: str,
        model: str,
        *,
        api_key_env: str | None = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout_s: float = 60.0,
        cost: TokenPrices | None = None,
        confidence: str | None = "mean",
        retries: int = 2,
        backoff_s: float = 0.5,
        max_retry_delay_s: float = 30.0,
        cache_sampled: bool = False,
        labels: Sequence[str] | None = None,
        version: str | None = None,
        max_length: int | None = None,
        estimate_output_tokens: int = 256,
        max_connections: int = 100,
        sleep: Callable[[float], None] = time.sleep,
        asleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ConfigError("base_url", f"must be an http(s) URL like http://127.0.0.1:8000/v1, got {base_url!r}")
        if not isinstance(model, str) or not model:
            raise ConfigError("model", f"must be a non-empty model name, got {model!r}")
        super().__init__(name, cost=CostModel(), capabilities=Capabilities.of(None, max_length),
                         version=version if version is not None else model.replace(":", "_"))
        if api_key_env is not None and (not isinstance(api_key_env, str) or not api_key_env):
            raise ConfigError("api_key_env", f"must be the name of an environment variable, got {api_key_env!r}")
        if labels is not None and (isinstance(labels, str) or not labels or not all(
                isinstance(lb, str) and lb for lb in labels)):
            raise ConfigError("labels", f"must be a non-empty list of non-empty str, got {labels!r}")
        positive("timeout_s", timeout_s)
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ConfigError("retries", f"must be an integer >= 0, got {retries!r}")
        positive("estimate_output_tokens", estimate_output_tokens, integer=True)
        positive("max_connections", max_connections, integer=True)
        self.base_url = base_url.rstrip("/")
        self.url = self.base_url + "/chat/completions"
        self.model = model
        self.api_key_env = api_key_env
        self.params = dict(params or {})
        try:  # the same checks as a request's own parameters (temperature, max_tokens, stop, seed, reserved keys)
            normalize({"messages": [{"role": "user", "content": "?"}], **self.params})
        except InvalidMessages as exc:
            raise ConfigError(f"params.{exc.field}", str(exc).split(": ", 1)[-1]) from exc
        self.headers = dict(headers or {})
        self.timeout_s = float(timeout_s)
        self.prices = cost if cost is not None else TokenPrices()
        self.confidence = check_reduction(confidence)
        self.retries = retries
        self.backoff_s = finite("backoff_s", backoff_s, low=0.0)
        self.max_retry_delay_s = finite("max_retry_delay_s", max_retry_delay_s, low=0.0)
        self.cache_sampled = bool(cache_sampled)
        self.labels = tuple(labels) if labels is not None else None
        self.estimate_output_tokens = estimate_output_tokens
        self.max_connections = max_connections
        self._sleep, self._asleep = sleep, asleep
        self._lock = threading.Lock()
        self._client: httpx.Client | None = None
        self._aclient: httpx.AsyncClient | None = None
        self._aclient_loop: asyncio.AbstractEventLoop | None = None
        self.usage_estimated = 0  # answers whose server sent no usage (tokens estimated, see _raw)

    # -- clients (created on first use) -------------------------------------------------------------------------

    def _client_options(self) -> dict[str, Any]:
        headers = dict(self.headers)
        if self.api_key_env is not None:
            key = os.environ.get(self.api_key_env)
            if not key:
                raise ConfigError(f"tiers.{self.name}.api_key_env",
                                  f"environment variable {self.api_key_env} is not set; export the API key there")
            headers["Authorization"] = f"Bearer {key}"
        limits = httpx.Limits(max_connections=self.max_connections, max_keepalive_connections=self.max_connections)
        return {"headers": headers, "timeout": httpx.Timeout(self.timeout_s), "limits": limits}

    def _sync_client(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                self._client = httpx.Client(**self._client_options())
            return self._client

    def _async_client(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        with self._lock:  # an AsyncClient's pool belongs to one event loop: a new loop gets a new client
            if self._aclient is None or self._aclient_loop is not loop:
                self._aclient = httpx.AsyncClient(**self._client_options())
                self._aclient_loop = loop
            return self._aclient

    def close(self) -> None:
        """Close the sync client's pooled connections (a later call opens a new pool)."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    async def aclose(self) -> None:
        """Close the async client of the running loop."""
        with self._lock:
            client, self._aclient = self._aclient, None
            self._aclient_loop = None
        if client is not None:
            await client.aclose()

    # -- the protocol -------------------------------------------------------------------------------------------

    def _body(self, x: Any, stream: bool = False) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        messages, params = normalize(x)
        body = {**self.params, **params, "model": self.model, "messages": messages}
        if self.confidence is not None and "logprobs" not in body:
            body["logprobs"] = True
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return messages, body

    def _retry_delay(self, error: TransientTierError, attempt: int) -> float | None:
        """Seconds to wait before retry ``attempt + 1``, or None when no retry is left or the server asks to wait
        longer than ``max_retry_delay_s`` (then the router falls back at once instead)."""
        if attempt >= self.retries:
            return None
        hinted = getattr(error, "retry_after", None)
        delay = hinted if hinted is not None else self.backoff_s * 2 ** attempt
        return None if delay > self.max_retry_delay_s else float(delay)

    def _transport_error(self, exc: Exception) -> Exception:
        if isinstance(exc, httpx.TimeoutException):
            return TierTimeout(self.name, f"{self.url} did not answer within {self.timeout_s:g}s "
                                          f"({type(exc).__name__}); raise timeout_s or check the server")
        return UpstreamUnavailable(f"tier {self.name!r}: cannot reach {self.url} ({type(exc).__name__}: {exc})")

    def _raw(self, messages: list[dict[str, Any]], completion: Completion) -> RawOutput:
        usage = completion.usage
        if usage is None:
            self.usage_estimated += 1
            if self.usage_estimated == 1:
                log.warning("tier %r: %s sent no usage; tokens are estimated as ceil(chars/4) of the conversation "
                            "and the answer (count in tier.usage_estimated)", self.name, self.url)
            text = completion.output if isinstance(completion.output, str) else ""
            usage = Usage(approx_tokens_of(conversation_text(messages)), approx_tokens_of(text))
        output = completion.output
        if self.labels is not None:
            label = parse_label(output, self.labels) if isinstance(output, str) else None
            if label is None:
                raise UpstreamProtocolError(self.name, f"answer {str(output)[:80]!r} names none (or several) of the "
                                                       f"labels {list(self.labels)[:8]}")
            output = label
        confidence = reduce_logprobs(completion.logprobs, self.confidence)
        return RawOutput(output, None, confidence, self.prices.cost(usage), usage)

    # -- sync path ----------------------------------------------------------------------------------------------

    def _next(self, response: httpx.Response | httpx.TransportError, attempt: int) -> str | float:
        """One rule for both shells: the body text of a 2xx answer, or the seconds to wait before retrying; else
        raises the mapped error (cause chained)."""
        if isinstance(response, httpx.Response):
            if response.status_code < 300:
                return response.text
            error = error_for(self.name, self.url, response.status_code, response.text, response.headers)
            cause: BaseException | None = None
        else:
            error, cause = self._transport_error(response), response
        delay = self._retry_delay(error, attempt) if isinstance(error, TransientTierError) else None
        if delay is None:
            raise error from cause
        return delay

    def _post(self, body: dict[str, Any]) -> str:
        client = self._sync_client()
        attempt = 0
        while True:
            try:
                response: httpx.Response | httpx.TransportError = client.post(self.url, json=body)
            except httpx.TransportError as exc:
                response = exc
            step = self._next(response, attempt)
            if isinstance(step, str):
                return step
            self._sleep(step)
            attempt += 1

    def _call(self, x: Any) -> RawOutput:
        messages, body = self._body(x)
        return self._raw(messages, parse_completion(self.name, self.url, self._post(body)))

    def _predict_raw(self, batch: Sequence[Any]) -> Sequence[RawOutput]:
        return [self._call(x) for x in batch]  # the sync client, never the private loop

    # -- async path ---------------------------------------------------------------------------------------------

    async def _apost(self, body: dict[str, Any]) -> str:
        client = self._async_client()
        attempt = 0
        while True:
            try:
                response: httpx.Response | httpx.TransportError = await client.post(self.url, json=body)
            except httpx.TransportError as exc:
                response = exc
            step = self._next(response, attempt)
            if isinstance(step, str):
                return step
            await self._asleep(step)
            attempt += 1

    async def _acall(self, x: Any) -> RawOutput:
        messages, body = self._body(x)
        return self._raw(messages, parse_completion(self.name, self.url, await self._apost(body)))

    async def _apredict_raw(self, batch: Sequence[Any]) -> Sequence[RawOutput]:
        if len(batch) <= self.max_connections:
            return list(await asyncio.gather(*(self._acall(x) for x in batch)))
        # more items than pooled connections: at most max_connections in flight (a long queue of waiters inside the
        # connection pool costs far more than this semaphore)
        gate = asyncio.Semaphore(self.max_connections)

        async def one(x: Any) -> RawOutput:
            async with gate:
                return await self._acall(x)

        return list(await asyncio.gather(*(one(x) for x in batch)))

    # -- validation before the template, so bad input is the caller's error (not a tier failure to fall back on)

    def predict(self, batch: Sequence[Any], lengths: Sequence[int] | None = None) -> list[Prediction]:
        for x in batch:
            normalize(x)
        return super().predict(batch, lengths)

    async def apredict(self, batch: Sequence[Any], lengths: Sequence[int] | None = None) -> list[Prediction]:
        for x in batch:
            normalize(x)
        return await super().apredict(batch, lengths)

    # -- streaming ----------------------------------------------------------------------------------------------

    async def astream(self, x: Any, length: int = 0) -> AsyncIterator[str | Prediction]:
        """Text deltas as the server sends them, then one complete ``Prediction`` (usage, cost, confidence).

        A stream cut before ``[DONE]`` raises ``UpstreamProtocolError`` and yields no ``Prediction``; 429/5xx
        before the first byte are retried like ``predict``.
        """
        messages, body = self._body(x, stream=True)
        version = self._serving_version()
        started = time.perf_counter()
        state = StreamState(self.name, self.url)
        async for delta in stream_completion(self, body, state):
            yield delta
        raw = self._raw(messages, state.finish())
        yield make_prediction(raw, self.name, version, 0.0, time.perf_counter() - started)

    # -- policies and caching -----------------------------------------------------------------------------------

    def _merged_params(self, x: Any) -> dict[str, Any]:
        _, params = normalize(x)
        return {**self.params, **params}

    def cacheable(self, x: Any) -> bool:
        """False for a sampled answer (temperature > 0, the protocol's default being 1, and no seed) unless
        ``cache_sampled``; bad input is left to the router's validation (True)."""
        if self.cache_sampled:
            return True
        try:
            params = self._merged_params(x)
        except TierFailure:
            return True
        except ValueError:
            return True
        if params.get("seed") is not None:
            return True
        return bool(params.get("temperature", 1.0) == 0 and params.get("n", 1) == 1)

    def estimate_usage(self, x: Any) -> Usage:
        """Tokens before the call: ceil(chars/4) of the conversation, plus ``max_tokens`` (or
        ``max_completion_tokens``, else ``estimate_output_tokens``) for the answer."""
        messages, params = normalize(x)
        merged = {**self.params, **params}
        out = merged.get("max_completion_tokens") or merged.get("max_tokens") or self.estimate_output_tokens
        return Usage(approx_tokens_of(conversation_text(messages)), int(out))

    def estimate_cost(self, x: Any) -> float:
        """The price of ``x`` before the call (``estimate_usage`` x token prices), for policies and budgets."""
        return self.prices.cost(self.estimate_usage(x))

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out.update(base_url=self.base_url, model=self.model, input_per_mtok=self.prices.input_per_mtok,
                   output_per_mtok=self.prices.output_per_mtok, confidence=self.confidence)
        return out

    @classmethod
    def from_config(cls, name: str, config: Mapping[str, Any], field: str | None = None) -> OpenAITier:
        """Build from a plain mapping (a config file's ``tiers.NAME`` section); errors name ``tiers.NAME.KEY``."""
        field = field or f"tiers.{name}"
        kwargs = openai_kwargs(config, field)
        try:
            return cls(name, **kwargs)
        except ConfigError as exc:  # the constructor names its argument; the config names the whole path
            if exc.field.startswith(field):
                raise
            raise rebased(exc, "", f"{field}.") from exc
