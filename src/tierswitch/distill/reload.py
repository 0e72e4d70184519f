"""Hot reload in every router process: follow the weight store's ``current`` version into a ``StudentTier``.

A background thread listens on the store's pub/sub channel and also re-reads ``current`` every ``poll_s`` (pub/sub
drops messages while disconnected, so the poll is the safety net). A version that is refused, for any reason (failed
verification, metadata nested too deep, a corrupt or non-UTF-8 ``current`` pointer, a student whose class count or
labels differ from the tier's), is remembered in ``rejected`` with its reason, logged once, and never retried or
served; the tier keeps its previous weights. ``sync()`` raises only ``DistillError`` (the store unreachable).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from tierswitch.distill.compress import quantize_int8
from tierswitch.distill.student import StudentTier, build_student
from tierswitch.distill.weights import LoadedWeights, WeightStore
from tierswitch.errors import ConfigError, DistillError, WeightVerificationError
from tierswitch.validation import describe

__all__ = ["WeightSubscriber"]

log = logging.getLogger("tierswitch.distill")


class WeightSubscriber:
    """Keep ``tier`` on the store's current version.

    ``int8`` overrides the published flag (None: follow it). ``on_load(version, meta)`` is called after each swap.
    ``loaded`` lists (version, wall time) of each swap; ``rejected`` maps each refused version to the reason.
    """

    def __init__(
        self,
        store: WeightStore,
        tier: StudentTier,
        *,
        int8: bool | None = None,
        poll_s: float = 5.0,
        on_load: Callable[[str, dict[str, Any]], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not poll_s > 0:
            raise ConfigError("reload.poll_s", f"must be > 0, got {describe(poll_s)}")
        self.store = store
        self.tier = tier
        self.int8 = int8
        self.poll_s = poll_s
        self.on_load = on_load
        self.clock = clock
        self.loaded: list[tuple[str, float]] = []
        self.rejected: dict[str, str] = {}
        self.errors = 0
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def sync(self) -> bool:
        """Load the current version if the tier does not serve it yet; True when a swap happened. A refused version
        is remembered (``rejected``) and named once in the log; the store being unreachable is a ``DistillError``."""
        with self._lock:
            try:
                version = self.store.current()
            except Exception as exc:  # redis errors: transient, so not remembered
                raise DistillError(f"cannot read the current student version from {describe(self.store.namespace)}:"
                                   f" {type(exc).__name__}: {exc}") from exc
            if version is None or version == self.tier.version or version in self.rejected:
                return False
            try:
                weights = self.store.load(version)
            except WeightVerificationError as exc:
                return self._reject(version, str(exc))
            except Exception as exc:  # the store went away mid-read: retried on the next sync
                raise DistillError(f"cannot read student {describe(version)}: {type(exc).__name__}: {exc}") from exc
            if weights is None:
                return False
            try:
                self._apply(weights)
            except Exception as exc:  # the weights verified but cannot serve here (class count changed ...)
                return self._reject(version, f"{type(exc).__name__}: {exc}")
            return True

    def _reject(self, version: str, reason: str) -> bool:
        self.rejected[version] = reason
        log.error("not serving student %s (remembered, not retried): %s", describe(version), reason)
        return False

    def _apply(self, weights: LoadedWeights) -> None:
        module = build_student(weights.spec)
        module.load_state_dict(weights.state_dict, strict=True)  # names and shapes were verified already
        int8 = weights.meta.get("int8", False) if self.int8 is None else self.int8
        served = quantize_int8(module) if int8 else module.eval()
        self.tier.swap_student(served, weights.spec, weights.version)
        self.loaded.append((weights.version, self.clock()))
        if self.on_load is not None:
            self.on_load(weights.version, weights.meta)

    # -- background thread ----------------------------------------------------------------------------------
    def start(self, wait_s: float | None = 5.0) -> WeightSubscriber:
        """Subscribe and load the current version in a background thread; wait up to ``wait_s`` for it to be
        subscribed (so no announcement after ``start`` returns is missed)."""
        if self._thread is not None:
            return self
        self._stop.clear()
        self._ready.clear()  # a restart waits for its own subscription, not the one before stop()
        self._thread = threading.Thread(target=self._run, name=f"tierswitch-reload-{self.tier.name}", daemon=True)
        self._thread.start()
        if wait_s and not self._ready.wait(wait_s):
            self.stop()  # no thread left retrying behind the caller's back
            raise DistillError(f"could not subscribe to {describe(self.store.channel)} within {wait_s}s; is Redis up?")
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop following the store (the thread ends within a poll of its pub/sub connection)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            pubsub = None
            try:
                pubsub = self.store.client.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(self.store.channel)
                pubsub.get_message(timeout=1.0)  # consume the subscribe confirmation: now we are listening
                self.sync()  # catch up on anything published before we subscribed
                self._ready.set()
                next_poll = time.monotonic() + self.poll_s
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=0.2)
                    if message is not None or time.monotonic() >= next_poll:
                        self.sync()
                        next_poll = time.monotonic() + self.poll_s
            except Exception as exc:  # Redis down or a bad apply: keep serving the current weights, retry
                self.errors += 1
                log.warning("weight subscriber for %r: %s; retrying", self.tier.name, exc)
                self._stop.wait(1.0)
            finally:
                if pubsub is not None:
                    try:
                        pubsub.close()
                    except Exception:  # closing a broken connection may fail too; nothing to do
                        pass
