"""A fleet's distillation buffer: a Redis Stream read through a consumer group.

Producers (router processes) ``XADD ... MAXLEN ~``; workers ``XREADGROUP`` and ``XACK`` only after the training step
that used the entries, so a worker that dies mid-batch leaves them pending: a restarted worker with the same consumer
name re-reads its own pending entries, and any worker ``XAUTOCLAIM``s entries another consumer left idle for
``claim_idle_ms``. Entries are acknowledged exactly once; set ``claim_idle_ms`` well above a training step's time so
a slow but live worker is never robbed (which would train on the same entry twice).

Entries trimmed by ``MAXLEN`` before anyone read them are lost by design (it bounds Redis memory); size it for the
backlog you accept. Trimmed-while-pending and corrupt entries are acknowledged and counted, never retried forever. A
group that vanished (a Redis restarted without persistence) is created again by the next ``take``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any

from tierswitch.distill.buffer import Buffer, Taken
from tierswitch.distill.sample import Sample, decode_sample, encode_sample
from tierswitch.errors import ConfigError, DistillError
from tierswitch.validation import positive

__all__ = ["RedisStreamBuffer"]

log = logging.getLogger("tierswitch.distill")
_FIELD = b"s"


def _sid(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisStreamBuffer(Buffer):
    """Samples in a Redis Stream ``stream``, consumed by ``consumer`` in group ``group``.

    ``client`` is a ``redis.Redis`` built with ``decode_responses=False``. ``audit_key`` (optional) names a Redis list
    that receives every acknowledged entry id in the same transaction as the ``XACK`` (for audits and tests).
    """

    def __init__(
        self,
        client: Any,
        stream: str,
        group: str = "distill",
        consumer: str = "worker-1",
        *,
        maxlen: int = 100_000,
        claim_idle_ms: int = 60_000,
        audit_key: str | None = None,
        reservoir: int = 2000,
        seed: int = 0,
    ) -> None:
        super().__init__(reservoir, seed)
        for name, value in (("stream", stream), ("group", group), ("consumer", consumer)):
            if not isinstance(value, str) or not value:
                raise ConfigError(f"buffer.{name}", f"must be a non-empty string, got {value!r}")
        positive("buffer.maxlen", maxlen, integer=True)
        if not isinstance(claim_idle_ms, int) or claim_idle_ms < 0:
            raise ConfigError("buffer.claim_idle_ms", f"must be an integer >= 0, got {claim_idle_ms!r}")
        self.client = client
        self.stream = stream
        self.group = group
        self.consumer = consumer
        self.maxlen = maxlen
        self.claim_idle_ms = claim_idle_ms
        self.audit_key = audit_key
        self.added = self.acked = self.claimed = self.redelivered = self.corrupt = self.lost = 0
        self._group_ready = False
        self._own_pending_done = False
        self._claim_cursor = "0-0"
        self._own_cursor = "0-0"
        self._inflight: set[str] = set()
        # One take at a time (a pending entry read by one take must be in _inflight before another take sees it).
        # _state_lock guards the cursors and _inflight across a non-blocking read and its bookkeeping, and across
        # an XACK and forgetting the ids, so an entry acknowledged by one thread is never re-claimed by a take in
        # another; it is never held across a blocking read, so an ack never waits for new samples.
        self._take_lock = threading.Lock()
        self._state_lock = threading.Lock()

    # -- producer side --------------------------------------------------------------------------------------
    def put_many(self, samples: Iterable[Sample]) -> int:
        pipe = self.client.pipeline(transaction=False)
        count = 0
        for sample in samples:
            pipe.xadd(self.stream, {_FIELD: encode_sample(sample)}, maxlen=self.maxlen, approximate=True)
            count += 1
        if count:
            pipe.execute()
            self.added += count
        return count

    # -- consumer side --------------------------------------------------------------------------------------
    def ensure_group(self) -> None:
        """Create the stream and the consumer group if missing; the group starts at the stream's first entry."""
        if self._group_ready:
            return
        try:
            self.client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except Exception as exc:  # BUSYGROUP: another process created it first
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    def take(self, n: int, timeout_s: float = 0.0, linger_s: float = 0.0) -> Taken:
        """Up to ``n`` entries: first this consumer's own unacknowledged ones (after a restart), then entries idle
        longer than ``claim_idle_ms`` in other consumers' lists (``XAUTOCLAIM``), then new ones."""
        self.ensure_group()
        with self._take_lock:
            try:
                return self._take(n, timeout_s, linger_s)
            except Exception as exc:
                if "NOGROUP" not in str(exc):
                    raise
            # the stream or its group is gone (a Redis restarted without persistence, a flush): every entry this
            # consumer had pending went with it, so start over on a new group rather than fail every take from now on
            log.warning("consumer group %r of stream %r is gone; creating it again", self.group, self.stream)
            with self._state_lock:
                self._group_ready = False
                self._own_pending_done = False
                self._own_cursor = self._claim_cursor = "0-0"
            self.ensure_group()
            return self._take(n, timeout_s, linger_s)

    def _take(self, n: int, timeout_s: float, linger_s: float) -> Taken:
        taken = Taken([], [])
        with self._state_lock:
            if not self._own_pending_done:
                # an explicit id reads this consumer's own pending entries after it, without blocking
                reply = self.client.xreadgroup(self.group, self.consumer, {self.stream: self._own_cursor}, count=n)
                entries = reply[0][1] if reply else []
                self._collect(entries, taken, "redelivered")
                if entries:
                    self._own_cursor = _sid(entries[-1][0])
                else:
                    self._own_pending_done = True
            if len(taken) < n:
                self._autoclaim(n - len(taken), taken)
        if len(taken) < n:
            block = int(timeout_s * 1000) if timeout_s > 0 and not taken.samples else None
            self._read_new(n - len(taken), block, taken)
        if taken.samples and len(taken) < n and linger_s > 0:  # a trickle: give the batch one chance to fill
            self._read_new(n - len(taken), int(linger_s * 1000), taken)
        return taken

    def _read_new(self, n: int, block: int | None, taken: Taken) -> None:
        """Entries never delivered to any consumer (``>``): blocking for them needs no lock."""
        reply = self.client.xreadgroup(self.group, self.consumer, {self.stream: ">"}, count=n, block=block)
        with self._state_lock:
            self._collect(reply[0][1] if reply else [], taken, None)

    def _autoclaim(self, n: int, taken: Taken) -> None:
        reply = self.client.xautoclaim(
            self.stream, self.group, self.consumer, self.claim_idle_ms, start_id=self._claim_cursor, count=n
        )
        self._claim_cursor = _sid(reply[0])
        self._collect(reply[1], taken, "claimed")
        deleted = [_sid(i) for i in (reply[2] if len(reply) > 2 else [])]
        if deleted:  # trimmed by MAXLEN while pending: nothing left to train on
            self.lost += len(deleted)
            self._ack_ids(deleted)

    def _collect(self, entries: list[Any], taken: Taken, counter: str | None) -> None:
        bad: list[str] = []
        for entry_id, fields in entries:
            sid = _sid(entry_id)
            if sid in self._inflight:
                continue  # already handed out by this process and not yet acknowledged
            if not fields or _FIELD not in fields:
                self.lost += 1
                bad.append(sid)
                continue
            try:
                sample = decode_sample(fields[_FIELD])
            except DistillError as exc:
                log.warning("acknowledging corrupt stream entry %s without training: %s", sid, exc)
                self.corrupt += 1
                bad.append(sid)
                continue
            taken.samples.append(sample)
            taken.ids.append(sid)
            self._inflight.add(sid)
            if counter:
                setattr(self, counter, getattr(self, counter) + 1)
        if bad:
            self._ack_ids(bad)

    def ack(self, taken: Taken) -> None:
        if taken.ids:
            with self._state_lock:
                self._ack_ids(taken.ids)
                self._inflight.difference_update(taken.ids)

    def _ack_ids(self, ids: list[str]) -> None:
        pipe = self.client.pipeline(transaction=True)  # XACK and the audit record land together or not at all
        pipe.xack(self.stream, self.group, *ids)
        if self.audit_key:
            pipe.rpush(self.audit_key, *ids)
        self.acked += int(pipe.execute()[0])

    def pending(self) -> int:
        """Entries delivered to some consumer of the group and not yet acknowledged."""
        self.ensure_group()
        return int(self.client.xpending(self.stream, self.group)["pending"])

    def stats(self) -> dict[str, int]:
        return {
            **super().stats(),
            "added": self.added,
            "acked": self.acked,
            "claimed": self.claimed,
            "redelivered": self.redelivered,
            "corrupt": self.corrupt,
            "lost": self.lost,
        }
