"""The shared cache of a fleet: routed results in Redis, as msgpack envelopes, keyed by tier, version and digest.

Keys are ``{namespace}:r:{tier}:{tier_version}:{digest}``; bumping a tier's version makes its old entries
unreachable (they age out by TTL, or ``purge`` removes them). Reads are one ``MGET``, writes one pipelined ``SET``
with ``PX``, deletes ``UNLINK``, purges ``SCAN`` + ``UNLINK`` in batches confined to the namespace (never ``KEYS``).

Redis being down is a miss, never a failed request: every redis error becomes ``CacheError``, which the ``Cache``
template counts and turns into a miss with a rate-limited warning. After ``failure_threshold`` consecutive connection
failures a breaker opens and the cache stops calling Redis for a back-off window (doubling up to ``backoff_max_s``),
so a dead server does not add a connect timeout to every request; when the window ends one call probes, and on
success the cache resumes by itself. Reads run on one connection per thread (see ``_mget``); writes and purges use
the client's pool. The client, the breaker and the per-thread connection are built by ``redis_conn``; ``redis`` is
imported only when a ``RedisCache`` is built.
"""

from __future__ import annotations

import os
import re
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import Any
from urllib.parse import quote

from tierswitch.cache.base import Cache, CacheKey
from tierswitch.cache.codec import decode, encode
from tierswitch.cache.redis_conn import Breaker, ThreadConnection, make_client, redact_url
from tierswitch.errors import CacheError, ConfigError, CorruptCacheValue, TierswitchError
from tierswitch.types import Prediction
from tierswitch.validation import positive

# Breaker and redact_url live in redis_conn; re-exported because callers import them from here
__all__ = ["Breaker", "RedisCache", "redact_url"]

_GLOB = re.compile(r"([*?\[\]\\])")


class RedisCache(Cache):
    """Results cache in Redis, shared by every router that uses the same server and ``namespace``.

    ``url_or_client``: a ``redis://``, ``rediss://`` or ``unix://`` URL (password and db allowed; the password is
    never logged), or a ready ``redis.Redis`` client built with ``decode_responses=False`` (its own timeouts and
    retries then apply). ``ttl_s`` (None: no expiry) ages entries out; values larger than ``max_value_bytes`` are
    not stored (counted as rejected). The socket timeouts bound every call; the breaker settings decide how long a
    dead server is left alone. ``clock`` (monotonic) drives the breaker, ``wall_clock`` stamps ``created_at``.
    Building the cache opens no connection; the first command does.
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
        if ttl_s is not None and not (_is_real(ttl_s) and ttl_s >= 0.001):
            raise ConfigError("cache.ttl_s", f"must be a number of seconds >= 0.001, or None; got {ttl_s!r}")
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
        self._redis_error: type[BaseException] = rex.RedisError
        self._reply_error: type[BaseException] = rex.ResponseError
        self._dropped: type[BaseException] = rex.ConnectionError
        self._local = threading.local()
        self._pinned: weakref.WeakSet[Any] = weakref.WeakSet()  # per-thread read connections, closed by close()

    # -- keys -----------------------------------------------------------------------------------------------
    def key(self, tier: str, version: str, digest: str) -> str:
        """The Redis key of one entry."""
        return f"{self._prefix}{tier}:{version}:{digest}"

    # -- backend seam ---------------------------------------------------------------------------------------
    def _fetch(self, keys: Sequence[CacheKey]) -> list[Any | None]:
        if not keys:
            return []  # MGET needs at least one key
        prefix = self._prefix
        names = [f"{prefix}{t}:{v}:{d}" for t, v, d in keys]
        return self.run(self._mget if self._owns_client else self._client.mget, names)

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
        prediction, _created = decode(stored)
        if prediction.tier != key[0] or prediction.tier_version != key[1]:
            # A value whose envelope names another tier/version must never be served under this key.
            raise CorruptCacheValue(
                f"value under {key} carries tier {prediction.tier!r} version {prediction.tier_version!r}"
            )
        return prediction, len(stored)

    def _store(self, items: Sequence[tuple[CacheKey, Prediction]]) -> list[int]:
        now = self._wall_clock()
        sizes: list[int] = []
        writes: list[tuple[str, bytes]] = []
        for (tier, version, digest), prediction in items:
            try:
                data = encode(prediction, now)
            except TierswitchError as exc:  # an output msgpack cannot carry: not storable, never half-written
                self._warn(f"not caching a {tier!r} result: {exc}")
                sizes.append(-1)
                continue
            if len(data) > self.max_value_bytes:
                sizes.append(-1)
                continue
            sizes.append(len(data))
            writes.append((self.key(tier, version, digest), data))
        if len(writes) == 1:
            self.run(self._client.set, writes[0][0], writes[0][1], px=self._px)
        elif writes:
            self.run(self._set_pipelined, writes)
        return sizes

    def _set_pipelined(self, writes: Sequence[tuple[str, bytes]]) -> None:
        pipe = self._client.pipeline(transaction=False)
        for name, data in writes:
            pipe.set(name, data, px=self._px)
        # raise_on_error=False so one refused SET (OOM, READONLY) is reported as such, after the rest ran
        for result in pipe.execute(raise_on_error=False):
            if isinstance(result, BaseException):
                raise result

    def _delete(self, keys: Sequence[CacheKey]) -> None:
        if keys:
            self.run(self._client.unlink, *[self.key(*k) for k in keys])

    def clear(self) -> None:
        """Remove every result in this namespace (other namespaces on the same server are untouched)."""
        self.purge()

    def purge(self, tier: str | None = None, version: str | None = None) -> int:
        """Delete this namespace's results, or one tier's, or one tier version's; returns how many keys went.

        Walks the keyspace with ``SCAN MATCH`` and deletes in batches of ``scan_batch`` with ``UNLINK``, so the
        server is never blocked. Raises ``CacheError`` when Redis fails (a purge is an operator's act, not a
        request, so it reports failure instead of hiding it).
        """
        if version is not None and tier is None:
            raise ConfigError("purge.version", "give the tier whose version to purge")
        pattern = _GLOB.sub(r"\\\1", self._prefix + (f"{tier}:" if tier else "") + (f"{version}:" if version else ""))
        # keys come back as bytes: compare (and slice) in bytes, since a non-ASCII tier name is longer in UTF-8
        exact = f"{self._prefix}{tier}:{version}:".encode() if version is not None else None
        deleted = 0
        for batch in self._scan(pattern + "*"):
            if exact is not None:  # a version "v" pattern also matches "v:x"; digests have no ':'
                batch = [k for k in batch if k.startswith(exact) and b":" not in k[len(exact) :]]
            if batch:
                deleted += self.run(self._client.unlink, *batch)
        return deleted

    def _scan(self, match: str) -> Iterator[list[bytes]]:
        batch: list[bytes] = []
        cursor = 0
        while True:
            cursor, found = self.run(self._client.scan, cursor, match, self.scan_batch)
            batch.extend(found)
            if len(batch) >= self.scan_batch or (cursor == 0 and batch):
                yield batch
                batch = []
            if cursor == 0:
                return

    # -- error mapping and the breaker ---------------------------------------------------------------------
    def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call ``fn`` (a redis command) through the breaker; every redis failure becomes ``CacheError``."""
        breaker = self.breaker
        if not breaker.allow():
            raise CacheError(
                f"redis at {self.url} failed {breaker.failures} times in a row; "
                f"not calling it for another {breaker.remaining():.2f}s"
            )
        try:
            result = fn(*args, **kwargs)
        except self._conn_errors as exc:
            breaker.failure()
            raise CacheError(self._scrub(f"redis at {self.url} unreachable: {type(exc).__name__}: {exc}")) from exc
        except self._redis_error as exc:  # the server answered (READONLY, OOM, ...): not a connection failure
            breaker.success()
            raise CacheError(self._scrub(f"redis at {self.url} refused: {type(exc).__name__}: {exc}")) from exc
        breaker.success()
        return result

    def _scrub(self, message: str) -> str:
        if self._secret:
            message = message.replace(self._secret, "***").replace(quote(self._secret, safe=""), "***")
        return message

    def health(self) -> dict[str, Any]:
        """Breaker state for dashboards: open?, consecutive failures, trips, calls skipped while open."""
        b = self.breaker
        return {"open": b.is_open, "failures": b.failures, "trips": b.trips, "skipped": b.skipped}

    def close(self) -> None:
        """Close the connections this cache created (a client passed in is left to its owner)."""
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


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value  # NaN != NaN
