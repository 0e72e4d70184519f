"""The shared cache of a fleet: routed results in Redis, as msgpack envelopes, keyed by tier, version and digest.

Keys are ``{namespace}:r:{tier}:{tier_version}:{digest}``; bumping a tier's version makes its old entries
unreachable (they age out by TTL, or ``purge`` removes them). Reads are one ``MGET``, writes one pipelined ``SET``
with ``PX``, deletes ``UNLINK``, purges ``SCAN`` + ``UNLINK`` in batches confined to the namespace (never ``KEYS``).

Redis being down is a miss, never a failed request: every redis error becomes ``CacheError``, which the ``Cache``
template counts and turns into a miss with a rate-limited warning. After ``failure_threshold`` consecutive connection
failures a breaker opens and the cache stops calling Redis for a back-off window (doubling up to ``backoff_max_s``),
so a dead server does not add a connect timeout to every request; a timeout (a stalled server) opens it at once,
so one request pays at most one socket timeout and the next ones skip Redis (lookups, writes, single-flight locks)
for the window. When the window ends one call probes, and on success the cache resumes by itself. Reads run on one
connection per thread (see ``_mget``); writes and purges use the client's pool.

The async methods (``aget_many``, ``alookup``, ``aset_many``, ...) use a pooled ``redis.asyncio`` client made on
first use in the running event loop; a client belongs to one loop, so each loop that uses the cache gets its own
(dropped with its loop; ``aclose()`` closes the current loop's). Keys, envelope, checks, breaker and error mapping
are the same code for both: only the command call differs (``run`` or ``arun``). The clients, the breaker and the
per-thread connection are built by ``redis_conn``; ``redis`` is imported only when a ``RedisCache`` is built.
"""

from __future__ import annotations

import asyncio
import os
import re
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import quote

from tierswitch.cache.base import Cache, CacheKey
from tierswitch.cache.checks import problem
from tierswitch.cache.codec import decode, encode
from tierswitch.cache.redis_conn import (
    Breaker,
    LoopClients,
    ThreadConnection,
    make_async_client,
    make_client,
    redact_url,
)
from tierswitch.cache.redis_purge import purge
from tierswitch.cache.ttl import check_ttl
from tierswitch.errors import CacheError, ConfigError, CorruptCacheValue, TierswitchError
from tierswitch.types import Prediction
from tierswitch.validation import positive

# Breaker and redact_url live in redis_conn; re-exported because callers import them from here
__all__ = ["Breaker", "RedisCache", "redact_url"]



class RedisCache(Cache):
    """Results cache in Redis, shared by every router that uses the same server and ``namespace``.

    ``url_or_client``: a ``redis://``, ``rediss://`` or ``unix://`` URL (password and db allowed; the password is
    never logged), or a ready ``redis.Redis`` client built with ``decode_responses=False`` (its own timeouts and
    retries then apply). ``ttl_s`` (None: no expiry) ages entries out; values larger than ``max_value_bytes`` are
    not stored (counted as rejected), and values read that are larger, or that fail the checks a tier's answer
    passes (``tierswitch.cache.checks``), are refused as corrupt (a miss, counted, warned, deleted). The socket
    timeouts bound every call; the breaker settings decide how long a dead or stalled server is left alone.
    ``clock`` (monotonic) drives the breaker, ``wall_clock`` stamps ``created_at``. Building the cache opens no
    connection; the first command does (the first async command in a loop makes that loop's async client).
    """

    def __init__(
        self,
        url_or_client: str | Any,
        *,
        namespace: str = "tierswitch",
        ttl_s: float | None = 24 * 3600.0,
        max_value_bytes: int = 1 << 20,
        socket_timeout_s: float = 0.25,
        connect_timeout_s: float = 0.25,
        failure_threshold: int = 3,
        backoff_s: float = 0.5,
        backoff_max_s: float = 5.0,
        scan_batch: int = 500,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        _check_namespace(namespace)
        check_ttl(ttl_s)
        positive("cache.max_value_bytes", max_value_bytes, integer=True)
        positive("cache.socket_timeout_s", socket_timeout_s)
        positive("cache.connect_timeout_s", connect_timeout_s)
        positive("cache.failure_threshold", failure_threshold, integer=True)
        positive("cache.backoff_s", backoff_s)
        positive("cache.scan_batch", scan_batch, integer=True)
        if not (_is_real(backoff_max_s) and backoff_max_s >= backoff_s):
            raise ConfigError("cache.backoff_max_s", f"must be >= backoff_s ({backoff_s}), got {backoff_max_s!r}")
        self.namespace = namespace
        self.ttl_s = ttl_s
        self.max_value_bytes = max_value_bytes
        self.scan_batch = scan_batch
        self.breaker = Breaker(failure_threshold, backoff_s, backoff_max_s, clock)
        self._wall_clock = wall_clock
        self._prefix = f"{namespace}:r:"
        self._px = None if ttl_s is None else max(1, int(round(ttl_s * 1000)))
        self._client, self.url, self._secret = make_client(url_or_client, socket_timeout_s, connect_timeout_s)
        self.client = self._client  # public, for tools that share this cache's connections (RedisSingleFlight)
        self._owns_client = isinstance(url_or_client, str)
        from redis import exceptions as rex  # imported here so `import tierswitch` never imports redis

        self._conn_errors: tuple[type[BaseException], ...] = (rex.ConnectionError, rex.TimeoutError, OSError)
        self._timeout_errors: tuple[type[BaseException], ...] = (rex.TimeoutError, TimeoutError)
        self._redis_errors: tuple[type[BaseException], ...] = (rex.RedisError, *self._conn_errors)
        self._redis_error: type[BaseException] = rex.RedisError
        self._reply_error: type[BaseException] = rex.ResponseError
        self._dropped: type[BaseException] = rex.ConnectionError
        self._local = threading.local()
        self._pinned: weakref.WeakSet[Any] = weakref.WeakSet()  # per-thread read connections, closed by close()
        self._async_clients = LoopClients(lambda: make_async_client(url_or_client, socket_timeout_s,
                                                                    connect_timeout_s))

    # -- keys -----------------------------------------------------------------------------------------------
    def key(self, tier: str, version: str, digest: str) -> str:
        """The Redis key of one entry."""
        return f"{self._prefix}{tier}:{version}:{digest}"

    # -- backend seam ---------------------------------------------------------------------------------------
    def _names(self, keys: Sequence[CacheKey]) -> list[str]:
        prefix = self._prefix
        return [f"{prefix}{t}:{v}:{d}" for t, v, d in keys]

    def _fetch(self, keys: Sequence[CacheKey]) -> list[Any | None]:
        return self.run(self._mget if self._owns_client else self._client.mget, self._names(keys))  # type: ignore[no-any-return]

    async def _afetch(self, keys: Sequence[CacheKey]) -> list[Any | None]:
        return await self.arun(self.async_client().mget, self._names(keys))  # type: ignore[no-any-return]

    def _mget(self, names: list[str]) -> list[Any]:
        """MGET on this thread's own connection, made with the client's settings. A hit then skips the pool's
        checkout and release (about 7 µs in redis-py 8, a quarter of a loopback round trip). The connection is
        re-made after a fork. If it drops after a success, it is redialled once at once, since the server may
        have restarted in between; a dead server then refuses the redial, and later calls dial once each."""
        mine = self._local.__dict__.get("conn")
        if mine is None or mine.pid != os.getpid():  # first use in this thread, or a forked child
            pool = self._client.connection_pool
            mine = self._local.conn = ThreadConnection(pool.connection_class(**pool.connection_kwargs))
            self._pinned.add(mine.conn)
        try:
            out = self._mget_on(mine.conn, names)
        except self._dropped:
            if not mine.healthy:
                raise
            mine.healthy = False
            out = self._mget_on(mine.conn, names)
        except BaseException:
            mine.healthy = False
            raise
        mine.healthy = True
        return out

    def _mget_on(self, conn: Any, names: list[str]) -> list[Any]:
        try:
            conn.send_command("MGET", *names)  # connects first when the connection is not open
            return conn.read_response()  # type: ignore[no-any-return]
        except self._reply_error:
            raise  # an error reply is read in full: the connection stays usable
        except BaseException:
            conn.disconnect()  # a half-read reply must never be read as the answer to the next command
            raise

    def _decode(self, key: CacheKey, stored: Any) -> tuple[Prediction, int]:
        if len(stored) > self.max_value_bytes:  # writes are capped; so are reads (another writer may not be)
            raise CorruptCacheValue(f"value under {key} is {len(stored)} bytes, over max_value_bytes")
        prediction, _created = decode(stored)
        if prediction.tier != key[0] or prediction.tier_version != key[1]:
            # A value whose envelope names another tier/version must never be served under this key.
            raise CorruptCacheValue(
                f"value under {key} carries tier {prediction.tier!r} version {prediction.tier_version!r}"
            )
        why = problem(prediction)  # well-formed but unfit (NaN output, confidence 7, logits as probs)
        if why is not None:
            raise CorruptCacheValue(f"value under {key} is refused: {why}")
        return prediction, len(stored)

    def _prepare(self, items: Sequence[tuple[CacheKey, Prediction]]) -> list[tuple[int, Any]]:
        now = self._wall_clock()
        out: list[tuple[int, Any]] = []
        for (tier, _, _), prediction in items:
            try:
                data = encode(prediction, now)
            except TierswitchError as exc:  # an output msgpack cannot carry: not storable, never half-written
                self._warn(f"not caching a {tier!r} result: {exc}")
                out.append((-1, None))
                continue
            out.append((-1, None) if len(data) > self.max_value_bytes else (len(data), data))
        return out

    def _store(self, writes: Sequence[tuple[CacheKey, Any]]) -> None:
        if len(writes) == 1:
            (key, data), = writes
            self.run(self._client.set, self.key(*key), data, px=self._px)
        else:
            self.run(self._set_pipelined, self._client, writes)

    async def _astore(self, writes: Sequence[tuple[CacheKey, Any]]) -> None:
        client = self.async_client()
        if len(writes) == 1:
            (key, data), = writes
            await self.arun(client.set, self.key(*key), data, px=self._px)
        else:
            await self.arun(self._aset_pipelined, client, writes)

    def _set_pipelined(self, client: Any, writes: Sequence[tuple[CacheKey, bytes]]) -> None:
        pipe = client.pipeline(transaction=False)
        for key, data in writes:
            pipe.set(self.key(*key), data, px=self._px)
        # raise_on_error=False so one refused SET (OOM, READONLY) is reported as such, after the rest ran
        _raise_first(pipe.execute(raise_on_error=False))

    async def _aset_pipelined(self, client: Any, writes: Sequence[tuple[CacheKey, bytes]]) -> None:
        async with client.pipeline(transaction=False) as pipe:
            for key, data in writes:
                pipe.set(self.key(*key), data, px=self._px)
            _raise_first(await pipe.execute(raise_on_error=False))

    def _delete(self, keys: Sequence[CacheKey]) -> None:
        if keys:
            self.run(self._client.unlink, *[self.key(*k) for k in keys])

    async def _adelete(self, keys: Sequence[CacheKey]) -> None:
        if keys:
            await self.arun(self.async_client().unlink, *[self.key(*k) for k in keys])

    def clear(self) -> None:
        """Remove every result in this namespace (other namespaces on the same server are untouched)."""
        self.purge()

    def purge(self, tier: str | None = None, version: str | None = None) -> int:
        """Delete this namespace's results, or one tier's, or one tier version's; returns how many keys went.

        Walks the keyspace with ``SCAN MATCH`` and deletes in batches of ``scan_batch`` with ``UNLINK``, so the
        server is never blocked. Raises ``CacheError`` when Redis fails (a purge is an operator's act, not a
        request, so it reports failure instead of hiding it).
        """
        return purge(self, self._prefix, tier, version)

    # -- error mapping and the breaker ---------------------------------------------------------------------
    def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call ``fn`` (a redis command) through the breaker; every redis failure becomes ``CacheError``."""
        self._admit()
        try:
            result = fn(*args, **kwargs)
        except self._redis_errors as exc:
            raise self._failed(exc) from exc
        self.breaker.success()
        return result

    async def arun(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``run`` for a ``redis.asyncio`` command (a coroutine function): the same breaker and error mapping."""
        self._admit()
        task = asyncio.current_task()
        cancels = task.cancelling() if task is not None else 0
        try:
            result = await fn(*args, **kwargs)
        except self._redis_errors as exc:
            raise self._failed(exc) from exc
        self.breaker.success()
        if task is not None and task.cancelling() > cancels:
            # A cancel that lands just as the reply arrives can be swallowed inside redis.asyncio (seen with
            # redis-py 8.1 on Python 3.11): the task would run on as if never cancelled. Deliver it here.
            raise asyncio.CancelledError()
        return result

    def command(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Run the redis command ``name`` (e.g. ``"set"``, ``"eval"``) on this cache's client, through ``run``."""
        return self.run(getattr(self._client, name), *args, **kwargs)

    async def acommand(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """``command`` on this event loop's ``redis.asyncio`` client, through ``arun``."""
        return await self.arun(getattr(self.async_client(), name), *args, **kwargs)

    def _admit(self) -> None:
        breaker = self.breaker
        if not breaker.allow():
            raise CacheError(
                f"redis at {self.url} failed {breaker.failures} times in a row; "
                f"not calling it for another {breaker.remaining():.2f}s"
            )

    def _failed(self, exc: BaseException) -> CacheError:
        """The ``CacheError`` for a redis failure, after telling the breaker: a timeout trips it at once, another
        connection failure counts towards its threshold, a refusal by a live server (READONLY, OOM) does not."""
        if isinstance(exc, self._conn_errors):
            self.breaker.failure(trip=isinstance(exc, self._timeout_errors))
            return CacheError(self._scrub(f"redis at {self.url} unreachable: {type(exc).__name__}: {exc}"))
        self.breaker.success()
        return CacheError(self._scrub(f"redis at {self.url} refused: {type(exc).__name__}: {exc}"))

    def async_client(self) -> Any:
        """The ``redis.asyncio`` client of the running event loop (made on first use there; opens no connection
        until its first command). Call from a coroutine."""
        return self._async_clients.get()

    async def aclose(self) -> None:
        """Close the running loop's ``redis.asyncio`` client (call before the loop ends; a loop that ends without
        it drops its client, whose sockets close when it is collected)."""
        await self._async_clients.aclose()

    def _scrub(self, message: str) -> str:
        if self._secret:
            message = message.replace(self._secret, "***").replace(quote(self._secret, safe=""), "***")
        return message

    def health(self) -> dict[str, Any]:
        """Breaker state for dashboards: open?, consecutive failures, trips, calls skipped while open."""
        b = self.breaker
        return {"open": b.is_open, "failures": b.failures, "trips": b.trips, "skipped": b.skipped}

    def close(self) -> None:
        """Close the sync connections this cache created (a client passed in is left to its owner), and forget the
        async clients (``aclose`` closes one from inside its loop)."""
        self._async_clients.clear()
        if self._owns_client:
            for conn in list(self._pinned):
                conn.disconnect()
            self._client.close()

    def __repr__(self) -> str:
        return f"RedisCache(url={self.url!r}, namespace={self.namespace!r}, ttl_s={self.ttl_s!r})"


def _check_namespace(namespace: Any) -> None:
    if not isinstance(namespace, str) or not re.fullmatch(r"[A-Za-z0-9_.\-:]+", namespace):
        raise ConfigError(
            "cache.namespace", f"must be a non-empty string of letters, digits and _ . - :, got {namespace!r}"
        )
    if "r" in namespace.split(":"):
        # keys of a namespace "a:r:b" would match the purge pattern "a:r:*" of namespace "a"
        raise ConfigError("cache.namespace", f"the segment 'r' is reserved for result keys, got {namespace!r}")


def _raise_first(results: Sequence[Any]) -> None:
    for result in results:
        if isinstance(result, BaseException):
            raise result


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value  # NaN != NaN
