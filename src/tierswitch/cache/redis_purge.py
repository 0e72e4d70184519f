"""``RedisCache.purge``: delete a namespace's results (or one tier's, or one tier version's) without blocking Redis.

Walks the keyspace with ``SCAN MATCH`` confined to the namespace (never ``KEYS``) and deletes in batches of
``scan_batch`` with ``UNLINK``. Every command goes through the cache's ``run`` (its breaker and error mapping).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, Protocol

from tierswitch.errors import ConfigError

__all__ = ["purge"]

_GLOB = re.compile(r"([*?\[\]\\])")


class RedisCommands(Protocol):
    """What a purge needs of the cache (``RedisCache``; a protocol, so this module does not import it back)."""

    scan_batch: int

    def command(self, name: str, *args: Any, **kwargs: Any) -> Any: ...


def purge(cache: RedisCommands, prefix: str, tier: str | None, version: str | None) -> int:
    """Delete the results under ``prefix`` (of ``tier``, of ``tier`` at ``version``); how many keys went."""
    if version is not None and tier is None:
        raise ConfigError("purge.version", "give the tier whose version to purge")
    pattern = _GLOB.sub(r"\\\1", prefix + (f"{tier}:" if tier else "") + (f"{version}:" if version else ""))
    # keys come back as bytes: compare (and slice) in bytes, since a non-ASCII tier name is longer in UTF-8
    exact = f"{prefix}{tier}:{version}:".encode() if version is not None else None
    deleted = 0
    for batch in _scan(cache, pattern + "*"):
        if exact is not None:  # a version "v" pattern also matches "v:x"; digests have no ':'
            batch = [k for k in batch if k.startswith(exact) and b":" not in k[len(exact) :]]
        if batch:
            deleted += cache.command("unlink", *batch)
    return deleted


def _scan(cache: RedisCommands, match: str) -> Iterator[list[bytes]]:
    batch: list[bytes] = []
    cursor = 0
    while True:
        cursor, found = cache.command("scan", cursor, match, cache.scan_batch)
        batch.extend(found)
        if len(batch) >= cache.scan_batch or (cursor == 0 and batch):
            yield batch
            batch = []
        if cursor == 0:
            return
