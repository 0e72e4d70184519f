"""What the gateway serves from: one ``Snapshot`` per loaded config (routers by route name, settings, limiter),
hot-reloaded through ``ReloadingRouter`` so a request runs entirely on the snapshot it started with.

Routes: ``tierswitch/auto`` is the configured policy; each tier name pins that tier (a router over that tier
alone, no fallback, so only its own cached answers serve); each ``gateway.routes`` entry is a policy variant over
the same tiers. All of a snapshot's routers share its cache; each has its own single flight (a
``RedisSingleFlight`` when the cache is Redis, so a fleet coalesces identical misses).
"""

from __future__ import annotations

import os
import weakref
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tierswitch.assembly.from_config import router_from_config
from tierswitch.assembly.reload import ReloadingRouter
from tierswitch.assembly.tiers import split_tiers
from tierswitch.cache.memory import MemoryCache
from tierswitch.config import cache_from_config, policy_from_config
from tierswitch.errors import ConfigError
from tierswitch.policies.fixed import Fixed
from tierswitch.router import Router
from tierswitch.serve.limits import MemoryLimiter, RedisLimiter
from tierswitch.serve.settings import AUTO, GatewaySettings, parse_gateway
from tierswitch.validation import rebased, section

__all__ = ["Gateway", "ServingRouter", "Snapshot"]

_MISSING: Any = object()


@dataclass(frozen=True)
class Snapshot:
    router: Router
    settings: GatewaySettings
    routes: Mapping[str, Router]
    pinned: Mapping[str, str]  # route name -> tier, for the routes that pin one
    limiter: MemoryLimiter | RedisLimiter


def _redis_url(config: Mapping[str, Any]) -> tuple[str, str] | None:
    cache = config.get("cache")
    if not isinstance(cache, Mapping) or cache.get("kind") != "redis":
        return None
    url = cache.get("url") or os.environ.get(str(cache.get("url_env", "")), "")
    return str(url), str(cache.get("namespace", "tierswitch"))


def _flight(cache: Any) -> Any:
    from tierswitch.cache.redis import RedisCache
    from tierswitch.cache.redis_flight import RedisSingleFlight
    from tierswitch.cache.singleflight import SingleFlight

    return RedisSingleFlight(cache) if isinstance(cache, RedisCache) else SingleFlight()


class Gateway:
    """The config file at ``path``, loaded (and reloaded) into snapshots; request ids mapped to routers' ids."""

    def __init__(self, path: str | Path, *, max_ids: int = 100_000) -> None:
        self.reloading = ReloadingRouter(path, {}, build=self._build)
        self._snapshots: weakref.WeakKeyDictionary[Router, Snapshot] = weakref.WeakKeyDictionary()
        self._ids: OrderedDict[str, tuple[Router, int]] = OrderedDict()
        self._max_ids = max_ids
        self._limiters: dict[tuple[str, str] | None, MemoryLimiter | RedisLimiter] = {}
        self._hooks: list[Any] = []

    def add_router_hook(self, hook: Any) -> None:
        """``hook`` on the auto router now serving and on every one a reload builds (e.g. ``RouterMetrics``)."""
        self._hooks.append(hook)
        if self.reloading.loaded is not None:
            self.reloading.loaded[0].add_hook(hook)

    def current(self) -> Snapshot:
        loaded = self.reloading.loaded
        if loaded is None:
            self.reloading.reload()
            loaded = self.reloading.loaded
        assert loaded is not None
        return self._snapshots[loaded[0]]

    def _limiter(self, config: Mapping[str, Any]) -> MemoryLimiter | RedisLimiter:
        where = _redis_url(config)
        limiter = self._limiters.get(where)
        if limiter is None:  # one per Redis (or none), kept across reloads so windows carry on
            limiter = MemoryLimiter() if where is None else RedisLimiter(*where)
            self._limiters[where] = limiter
        return limiter

    def _build(self, config: Mapping[str, Any], _tiers: Any, **overrides: Any) -> Router:
        """``ReloadingRouter``'s build: tiers from the config, the gateway section, every route's router."""
        config = dict(config)
        gateway_section = config.pop("gateway", None)
        rest, tiers = split_tiers(config)
        settings = parse_gateway(gateway_section, list(tiers))
        cache = overrides.pop("cache", _MISSING)
        if cache is _MISSING:
            cache = cache_from_config(rest["cache"]) if "cache" in rest else MemoryCache()
        rest.pop("cache", None)
        router = router_from_config(rest, tiers, cache=cache, single_flight=_flight(cache), **overrides)
        for hook in self._hooks:
            router.add_hook(hook)
        routes: dict[str, Router] = {AUTO: router}
        pinned: dict[str, str] = {}
        for name, tier in router.tiers.items():  # the router's own tier objects (reliability guards included)
            routes[name] = Router([tier], Fixed(name), cache=cache,
                                  single_flight=_flight(cache), fallback=False,
                                  max_input_bytes=router.max_input_bytes, max_batch=router.max_batch)
            pinned[name] = name
        for name, policy_config in settings.routes.items():
            field = f"gateway.routes.{name}.policy"
            try:
                policy = policy_from_config(section(policy_config, field), field)
                routes[name] = Router(list(router.tiers.values()), policy, estimator=router.estimator, cache=cache,
                                      single_flight=_flight(cache), fallback=router.fallback,
                                      max_input_bytes=router.max_input_bytes, max_batch=router.max_batch)
            except ConfigError as exc:
                raise (exc if exc.field.startswith("gateway.") else rebased(exc, "policy", field)) from exc
        self._snapshots[router] = Snapshot(router, settings, routes, pinned, self._limiter(config))
        return router

    # -- request ids ----------------------------------------------------------------------------------------
    def remember(self, request_id: str, router: Router, router_id: int) -> None:
        ids = self._ids
        ids[request_id] = (router, router_id)
        if len(ids) > self._max_ids:
            ids.popitem(last=False)

    def recall(self, request_id: str) -> tuple[Router, int] | None:
        return self._ids.get(request_id)

    async def close(self) -> None:
        self.reloading.stop()
        for limiter in self._limiters.values():
            await limiter.close()


class ServingRouter:
    """The auto router now serving, for readers that hold on to one router (``RouterMetrics``): every attribute is
    read from the current snapshot, and hooks follow reloads."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    @property
    def stats(self) -> Any:
        return self.gateway.current().router.stats

    @property
    def tiers(self) -> Any:
        return self.gateway.current().router.tiers

    @property
    def cache(self) -> Any:
        return self.gateway.current().router.cache

    def add_hook(self, hook: Any) -> None:
        self.gateway.add_router_hook(hook)
