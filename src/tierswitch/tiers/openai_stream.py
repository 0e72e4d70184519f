"""The streaming shell of ``OpenAITier``: POST with ``stream: true``, pass server-sent events through line by line."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

import httpx

from tierswitch.errors import TierFailure, TransientTierError, UpstreamProtocolError
from tierswitch.tiers.openai_protocol import StreamState, error_for

__all__ = ["StreamHost", "stream_completion"]


class StreamHost(Protocol):
    """What the stream needs of its tier (``OpenAITier``): name, URL, client, error mapping and retry rules."""

    name: str
    url: str
    _asleep: Callable[[float], Awaitable[None]]

    def _async_client(self) -> httpx.AsyncClient: ...

    def _transport_error(self, exc: Exception) -> Exception: ...

    def _retry_delay(self, error: TransientTierError, attempt: int) -> float | None: ...


async def stream_completion(tier: StreamHost, body: dict[str, Any], state: StreamState) -> AsyncIterator[str]:
    """Yield the text deltas of one streamed completion into ``state`` (``state.finish()`` gives the whole answer).

    Retries 429/5xx/connection failures before the first byte; once deltas flowed, a dropped connection or a
    timeout is an ``UpstreamProtocolError``/``TierTimeout`` (never a retry that would repeat text).
    """
    client = tier._async_client()
    attempt = 0
    while True:
        error: Exception
        try:
            async with client.stream("POST", tier.url, json=body) as response:
                if response.status_code < 300:
                    try:
                        async for line in response.aiter_lines():
                            delta = state.feed(line)
                            if delta is not None:
                                yield delta
                            if state.done:
                                break
                    except httpx.TimeoutException as exc:
                        raise tier._transport_error(exc) from exc
                    except httpx.TransportError as exc:
                        raise UpstreamProtocolError(tier.name, f"{tier.url} dropped the stream after "
                                                               f"{len(state.parts)} deltas ({type(exc).__name__}); "
                                                               "the partial answer is dropped") from exc
                    return
                text = (await response.aread()).decode("utf-8", errors="replace")
                error = error_for(tier.name, tier.url, response.status_code, text, response.headers)
                cause: BaseException | None = None
        except httpx.TransportError as exc:
            error = tier._transport_error(exc)
            cause = exc
        delay = tier._retry_delay(error, attempt) if isinstance(error, TransientTierError) else None
        if delay is None:
            if isinstance(error, TierFailure):
                raise error from cause
            raise TierFailure(tier.name, f"{type(error).__name__}: {error}") from error
        await tier._asleep(delay)
        attempt += 1
