"""``ReloadingRouter``: a router whose config file can change while it serves.

Each request reads the current ``Router`` once and runs entirely on it, so a reload is one reference swap: requests
in flight finish on the old config, new ones start on the new one, and none is lost. A config that fails to load
or validate leaves the old router serving (the error is kept in ``last_error`` and raised to the caller of
``reload``). The cache carries over when the cache section did not change, so a reload does not empty it.

``build`` (default ``router_from_config``) turns the loaded config, ``tiers`` and the overrides into the router; a
program that builds its tiers from the config itself (``tierswitch serve``) passes its own. ``loaded`` is the
(router, config) pair now serving, swapped as one reference.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tierswitch.assembly.from_config import router_from_config
from tierswitch.config import load_config
from tierswitch.errors import ConfigError, TierswitchError
from tierswitch.router import Router
from tierswitch.tiers.base import Tier
from tierswitch.types import Routed

__all__ = ["ReloadingRouter"]

log = logging.getLogger("tierswitch.reload")


class ReloadingRouter:
    """Serve from the config at ``path`` over ``tiers``; ``reload()`` (or ``watch()``) picks up changes."""

    def __init__(
        self,
        path: str | Path,
        tiers: Sequence[Tier] | Mapping[str, Callable[..., Any] | Tier],
        *,
        build: Callable[..., Router] | None = None,
        **overrides: Any,
    ) -> None:
        self.path = Path(path)
        self.tiers = tiers
        self.build: Callable[..., Router] = build if build is not None else router_from_config
        self.loaded: tuple[Router, dict[str, Any]] | None = None
        self.overrides = overrides
        self.reloads = 0
        self.last_error: TierswitchError | None = None
        self._router: Router | None = None
        self._fingerprint: str | None = None
        self._cache_section: Any = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    @property
    def current(self) -> Router:
        """The router now serving (loaded on first use)."""
        router = self._router
        if router is None:
            self.reload()
            router = self._router
        assert router is not None
        return router

    def __call__(self, x: Any, **kwargs: Any) -> Routed:
        return self.current(x, **kwargs)

    def batch(self, xs: Sequence[Any], **kwargs: Any) -> list[Routed]:
        return self.current.batch(xs, **kwargs)

    async def acall(self, x: Any, **kwargs: Any) -> Routed:
        return await self.current.acall(x, **kwargs)

    def reload(self, force: bool = False) -> bool:
        """Load the file; swap routers when its content changed (or ``force``). True when a new router serves."""
        with self._lock:
            try:
                try:
                    content = self.path.read_bytes()
                except OSError as exc:  # missing, a directory, no permission: the old config keeps serving
                    raise ConfigError(str(self.path), f"cannot read {self.path}: {exc}") from exc
                fingerprint = hashlib.blake2b(content, digest_size=16).hexdigest()
                if not force and fingerprint == self._fingerprint and self._router is not None:
                    return False
                config = load_config(self.path, content)  # the bytes fingerprinted, not a second read
                overrides = dict(self.overrides)
                old = self._router
                if old is not None and config.get("cache") == self._cache_section and "cache" not in overrides:
                    overrides["cache"] = old.cache
                router = self.build(config, self.tiers, **overrides)
            except TierswitchError as exc:
                self.last_error = exc
                log.error("config %s not loaded, the previous one keeps serving: %s", self.path, exc)
                raise
            self._router = router  # the swap: one reference assignment
            self.loaded = (router, config)
            self._fingerprint = fingerprint
            self._cache_section = config.get("cache")
            self.reloads += 1
            self.last_error = None
        # A cache the new router does not share (its section changed) is closed, so a replaced Redis cache does not
        # keep its connections. A request still in flight on the old router then sees a cache miss, never an error.
        if old is not None and old.cache is not None and old.cache is not router.cache:
            close = getattr(old.cache, "close", None)
            if close is not None:
                close()
        return True

    def watch(self, interval_s: float = 1.0) -> None:
        """Check the file every ``interval_s`` seconds in a daemon thread until ``stop()``."""
        if self._watcher is not None:
            return
        self._stop.clear()

        def loop() -> None:
            while not self._stop.wait(interval_s):
                try:
                    self.reload()
                except TierswitchError:
                    pass  # logged in reload; keep serving the old config
                except Exception:  # a bug in some factory must not end the watching: log it, keep serving
                    log.exception("config %s not loaded, the previous one keeps serving", self.path)

        self._watcher = threading.Thread(target=loop, name="tierswitch-config-watch", daemon=True)
        self._watcher.start()

    def stop(self) -> None:
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join()
            self._watcher = None
