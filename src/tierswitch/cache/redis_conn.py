"""Connections for ``RedisCache``: building the client, redacting its URL, the breaker, per-thread read connections.

Building a client opens no connection (the first command does). Passwords never reach a repr, log line or error:
``redact_url`` masks them in URLs, and ``make_client`` hands the password back separately so callers can scrub it
from redis-py's messages. ``Breaker`` keeps a dead server from adding a connect timeout to every request. ``redis``
is imported inside ``make_client`` only, so importing this module stays cheap.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from tierswitch.errors import ConfigError

__all__ = ["Breaker", "LoopClients", "ThreadConnection", "make_async_client", "make_client", "redact_url"]


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (safe for reprs and logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = quote(unquote(parts.username or ""), safe="")
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class Breaker:
    """Counts consecutive connection failures; when ``threshold`` is reached, refuses calls for a window.

    The window starts at ``backoff_s`` and doubles after every failed probe, up to ``backoff_max_s``; a success
    closes the breaker and resets the window. ``clock`` is injectable so tests move time instead of sleeping.
    """

    def __init__(self, threshold: int, backoff_s: float, backoff_max_s: float, clock: Callable[[], float]) -> None:
        self.threshold = threshold
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self._clock = clock
        self._lock = threading.Lock()
        self.failures = 0  # consecutive connection failures
        self.open_until = 0.0
        self.window = backoff_s
        self.trips = 0  # times the breaker opened (or re-opened after a failed probe)
        self.skipped = 0  # calls refused without touching the network

    @property
    def is_open(self) -> bool:
        return self.failures >= self.threshold and self._clock() < self.open_until

    def allow(self) -> bool:
        """True when a call may go to Redis. Past the window, the first caller is let through as the probe and the
        window is re-armed for everyone else until that probe reports."""
        if self.failures < self.threshold:  # fast path, read without the lock: a stale read only delays one call
            return True
        with self._lock:
            now = self._clock()
            if self.failures < self.threshold:
                return True
            if now >= self.open_until:
                self.open_until = now + self.window
                return True
            self.skipped += 1
            return False

    def success(self) -> None:
        if self.failures:
            with self._lock:
                self.failures = 0
                self.window = self.backoff_s

    def failure(self, *, trip: bool = False) -> None:
        """Count a connection failure; ``trip=True`` (a timeout: the server is stalled, and every further call
        would wait out its own timeout) opens the breaker at once instead of after ``threshold`` failures."""
        with self._lock:
            self.failures = max(self.failures + 1, self.threshold) if trip else self.failures + 1
            if self.failures >= self.threshold:
                self.open_until = self._clock() + self.window
                self.window = min(self.window * 2, self.backoff_max_s)
                self.trips += 1

    def remaining(self) -> float:
        return max(0.0, self.open_until - self._clock())


class ThreadConnection:
    """One thread's read connection. Only that thread's local state refers to it, so it is closed as soon as the
    thread ends, without waiting for the garbage collector (redis-py connections sit in reference cycles)."""

    __slots__ = ("conn", "pid", "healthy")

    def __init__(self, conn: Any) -> None:
        self.conn, self.pid, self.healthy = conn, os.getpid(), False

    def __del__(self) -> None:
        try:
            self.conn.disconnect()  # after a fork redis-py only closes the child's copy of the socket
        except Exception:  # interpreter shutdown, or a socket already gone
            pass


def make_client(url_or_client: Any, socket_timeout_s: float, connect_timeout_s: float) -> tuple[Any, str, str]:
    """(client, redacted url, password) — building a client opens no connection."""
    if isinstance(url_or_client, str):
        url = url_or_client
        scheme = urlsplit(url).scheme
        if scheme not in ("redis", "rediss", "unix"):
            raise ConfigError("cache.url", f"must start with redis://, rediss:// or unix://, got {redact_url(url)!r}")
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        try:
            client = redis.Redis.from_url(
                url,
                socket_timeout=socket_timeout_s,
                socket_connect_timeout=connect_timeout_s,
                # No client-side retries: a failure is a miss at once, and the breaker decides when to try again.
                retry=Retry(NoBackoff(), 0),
                decode_responses=False,
            )
        except ValueError as exc:
            raise ConfigError("cache.url", f"cannot parse {redact_url(url)!r}: {exc}") from exc
        return client, redact_url(url), unquote(urlsplit(url).password or "")
    kwargs_of = getattr(url_or_client, "get_connection_kwargs", None)
    if kwargs_of is None or not callable(getattr(url_or_client, "mget", None)):
        raise ConfigError("cache.url", f"expected a redis URL or a redis.Redis client, got {type(url_or_client)!r}")
    kwargs = kwargs_of()
    if kwargs.get("decode_responses"):
        raise ConfigError("cache.client", "the redis client must use decode_responses=False (values are bytes)")
    host = kwargs.get("host") or kwargs.get("path") or "?"
    where = f"redis://{host}:{kwargs.get('port', '')}/{kwargs.get('db', 0)}"
    return url_or_client, where, str(kwargs.get("password") or "")


_ASYNC_KWARGS = ("host", "port", "db", "username", "password", "path", "socket_timeout", "socket_connect_timeout")


def make_async_client(url_or_client: Any, socket_timeout_s: float, connect_timeout_s: float) -> Any:
    """A ``redis.asyncio`` client with the same server and settings as ``make_client``'s (no connection yet).

    For a URL, built from it with the same timeouts and no client-side retries. For a sync client passed in, built
    from its connection settings (host or unix path, db, credentials, timeouts); TLS or other custom connection
    classes are not carried over: pass a URL for those.
    """
    from redis.asyncio import Redis as AsyncRedis
    from redis.asyncio.retry import Retry as AsyncRetry
    from redis.backoff import NoBackoff

    retry = AsyncRetry(NoBackoff(), 0)
    if isinstance(url_or_client, str):
        return AsyncRedis.from_url(url_or_client, socket_timeout=socket_timeout_s,
                                   socket_connect_timeout=connect_timeout_s, retry=retry, decode_responses=False)
    kwargs = url_or_client.get_connection_kwargs()
    chosen = {k: kwargs[k] for k in _ASYNC_KWARGS if kwargs.get(k) is not None}
    if "path" in chosen:
        from redis.asyncio.connection import UnixDomainSocketConnection

        chosen.pop("host", None)
        chosen.pop("port", None)
        return AsyncRedis(connection_pool=_pool(UnixDomainSocketConnection, chosen, retry))
    return AsyncRedis(retry=retry, decode_responses=False, **chosen)


def _pool(connection_class: Any, kwargs: dict[str, Any], retry: Any) -> Any:
    from redis.asyncio import ConnectionPool

    return ConnectionPool(connection_class=connection_class, retry=retry, **kwargs)


class LoopClients:
    """One ``redis.asyncio`` client per event loop (a client and its pool belong to the loop that made them).

    ``get()`` returns the running loop's client, made by ``make`` on first use there; the last loop served is
    checked first, without the lock. A client refers to its loop, so a weak mapping would never let go: clients of
    loops that have ended are swept out when a new loop arrives (their sockets close when collected), and
    ``aclose()`` closes the running loop's client at once.
    """

    def __init__(self, make: Callable[[], Any]) -> None:
        self._make = make
        self._clients: dict[asyncio.AbstractEventLoop, Any] = {}
        self._last: tuple[Any, Any] = (None, None)
        self._lock = threading.Lock()

    def get(self) -> Any:
        loop = asyncio.get_running_loop()
        last_loop, client = self._last
        if last_loop is loop:
            return client
        with self._lock:
            client = self._clients.get(loop)
            if client is None:
                for ended in [old for old in self._clients if old.is_closed()]:
                    del self._clients[ended]
                client = self._make()
                self._clients[loop] = client
            self._last = (loop, client)
        return client

    async def aclose(self) -> None:
        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._clients.pop(loop, None)
            if self._last[0] is loop:
                self._last = (None, None)
        if client is not None:
            await client.aclose()

    def clear(self) -> None:
        with self._lock:
            self._clients.clear()
            self._last = (None, None)

    def __len__(self) -> int:
        return len(self._clients)
