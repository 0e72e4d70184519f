"""The middleware: one request through cache, estimator, capability filter, policy, tiers and hooks.

``Router`` holds the configuration and is the public surface; the steps live in ``tierswitch.routing`` and take
the router as their narrow ``RoutingState``. Each step is written once, as a generator of effects
(``routing.effects``), and driven by a sync shell (``__call__``, ``batch``) or an async one (``acall``, ``abatch``,
``astream``): async tiers are awaited, sync tiers run in a bounded executor, the cache and single flight use their
async paths. Every request leaves a trace (what was tried and why) and, when hooks are attached, a
``DecisionRecord``.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tierswitch.cache.base import Cache
from tierswitch.cache.memory import MemoryCache
from tierswitch.cache.singleflight import SingleFlight
from tierswitch.errors import ConfigError
from tierswitch.estimator.base import Estimator
from tierswitch.estimator.complexity import ComplexityEstimator
from tierswitch.policies.base import Policy
from tierswitch.reliability.fallback import FallbackPlan, fallback_from_config
from tierswitch.routing.batch import route_batch
from tierswitch.routing.effects import AsyncShell, SyncShell
from tierswitch.routing.failures import FailureLog
from tierswitch.routing.hooks import Hook, learner_hooks, send_feedback
from tierswitch.routing.request import route_one
from tierswitch.routing.stats import LiveAgreement, RouterStats
from tierswitch.routing.streaming import route_stream
from tierswitch.tiers.base import Tier
from tierswitch.types import DecisionRecord, Routed, TraceStep

__all__ = ["Router", "set_assembler"]

log = logging.getLogger("tierswitch.router")
_DEFAULT: Any = object()

# Config assembly sits above the routing core; it registers its builder here when it is imported (``import
# tierswitch`` does), so ``Router.from_config`` works without the core importing upwards.
_assembler: Callable[..., Router] | None = None


def set_assembler(build: Callable[..., Router]) -> None:
    """Register the function behind ``Router.from_config`` (called by ``tierswitch.assembly``)."""
    global _assembler
    _assembler = build


class Router:
    """Route every input to the cheapest tier that will likely be right.

    ``tiers`` are ordered cheapest first (the last is the "full" tier); ``policy`` picks a tier per request;
    ``estimator`` scores complexity (default: ``ComplexityEstimator``); ``cache`` defaults to a ``MemoryCache``
    (pass None to disable); ``hooks`` receive a ``DecisionRecord`` per request; ``fallback`` lets a failed tier
    hand over to the next capable tier (more expensive first, then cheaper ones). ``single_flight`` coalesces
    concurrent identical misses into one computation: an in-process ``SingleFlight`` by default, a
    ``RedisSingleFlight`` for a fleet, None to switch it off. ``max_input_bytes`` (default 8 MB, None: no bound)
    and ``max_batch`` bound what one call may hand the router; over them is ``InputTooLarge``.
    """

    def __init__(
        self,
        tiers: Sequence[Tier],
        policy: Policy,
        *,
        estimator: Estimator | None = None,
        cache: Cache | None = _DEFAULT,
        hooks: Sequence[Hook] = (),
        fallback: bool | FallbackPlan | Mapping[str, Any] = True,
        single_flight: Any = _DEFAULT,
        max_input_bytes: int | None = 8_000_000,
        max_batch: int = 10_000,
        executor_workers: int | None = None,
    ) -> None:
        tiers = tuple(tiers)
        if not tiers:
            raise ConfigError("tiers", "a router needs at least one tier")
        names = [t.name for t in tiers]
        if len(set(names)) != len(names):
            raise ConfigError("tiers", f"tier names must be unique, got {names}")
        unknown = policy.tier_names() - set(names)
        if unknown:
            raise ConfigError("policy", f"refers to unknown tier(s) {sorted(unknown)}; the router has {names}")
        self.tiers: dict[str, Tier] = {t.name: t for t in tiers}
        self.tier_order: tuple[str, ...] = tuple(names)
        self.full: str = names[-1]
        self.policy = policy
        self.estimator = estimator if estimator is not None else ComplexityEstimator()
        probe = self.estimator.probe
        if probe is not None and probe not in self.tiers:
            raise ConfigError("estimator.probe", f"unknown tier {probe!r}; the router has {names}")
        self.cache: Cache | None = MemoryCache() if cache is _DEFAULT else cache
        self.hooks: list[Hook] = list(hooks)
        self.hooks += [h for h in learner_hooks(policy) if h not in self.hooks]  # learning policies see every record
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise ConfigError("router.max_batch", f"must be an integer >= 1, got {max_batch!r}")
        if max_input_bytes is not None and (
            isinstance(max_input_bytes, bool) or not isinstance(max_input_bytes, int) or max_input_bytes < 1
        ):
            raise ConfigError("router.max_input_bytes", f"must be an integer >= 1 or None, got {max_input_bytes!r}")
        self.fallback: bool | FallbackPlan = (
            fallback if isinstance(fallback, FallbackPlan) else fallback_from_config(fallback, names)
        )
        self.single_flight: SingleFlight | None = SingleFlight() if single_flight is _DEFAULT else single_flight
        self.max_input_bytes = max_input_bytes
        self.max_batch = max_batch
        if executor_workers is not None and (
            isinstance(executor_workers, bool) or not isinstance(executor_workers, int) or executor_workers < 1
        ):
            raise ConfigError("router.executor_workers", f"must be an integer >= 1, got {executor_workers!r}")
        self.executor_workers = executor_workers or min(32, (os.cpu_count() or 1) + 4)
        self.stats = RouterStats()
        self.live_agreement = LiveAgreement()
        self.failure_log = FailureLog()  # tier failures: counted per tier, logged rate-limited
        self.request_ids: Iterator[int] = itertools.count(1)
        self.capable_by_modality: dict[str, tuple[tuple[str, ...], int]] = {}
        self.accepted_steps = {name: TraceStep("accept", name) for name in names}  # immutable, shared
        # tiers whose answers are always cacheable (the base rule): admission skips asking them per request
        self.always_cacheable = frozenset(t.name for t in tiers if type(t).cacheable is Tier.cacheable)
        self._sync = SyncShell(self)
        self._async = AsyncShell(self)
        self._executor: ThreadPoolExecutor | None = None
        self._executor_lock = threading.Lock()

    @classmethod
    def from_config(cls, config: Any, tiers: Any = None, **overrides: Any) -> Router:
        """A router from a YAML/TOML path or a dict (see ``tierswitch.config``) over ``tiers``: ``Tier`` objects,
        or a mapping of names to tiers or plain inference functions (tiers the config builds itself, such as LLM
        endpoints, need no entry). ``overrides`` go to the constructor."""
        if _assembler is None:  # only when tierswitch.routing is imported on its own, without the package
            raise ConfigError("config", "config assembly is not loaded; import tierswitch first")
        return _assembler(config, tiers, **overrides)

    # -- public surface -------------------------------------------------------------------------------------
    @property
    def agreement(self) -> dict[str, float]:
        """Each tier's live agreement with the full tier (from shadow samples), once it has enough of them."""
        return dict(self.live_agreement.view)

    def observe_agreement(self, tier: str, agreed: bool) -> None:
        """Record one shadow comparison of ``tier`` against the full tier."""
        self.live_agreement.observe(tier, agreed)

    def add_hook(self, hook: Hook) -> None:
        """Call ``hook(record)`` after every request. A hook that raises is logged and counted, never fatal."""
        self.hooks.append(hook)

    def feedback(self, request_id: int, reward: float | None = None, *, quality: float | None = None) -> bool:
        """Report the outcome of an answered request (a reward, or a quality in [0, 1]) to the policies that learn
        from it (bandits, A/B tests). True when some policy knew the request."""
        return send_feedback(self.policy, request_id, reward, quality)

    def distill_into(self, student: str = "distilled", teacher: str = "full", **options: Any) -> Any:
        """Train the ``student`` tier (a ``StudentTier``) online from the ``teacher`` tier's answers: three lines
        to turn distillation on. ``options`` go to ``tierswitch.distill.attach.distill_into``; returns its
        ``Distillation`` handle (``summary()``, ``finish()``, ``detach()``)."""
        from tierswitch.distill.attach import distill_into  # torch is imported only when distillation is used

        return distill_into(self, student, teacher, **options)

    def __call__(self, x: Any, *, modality: str | None = None, **meta: Any) -> Routed:
        """Route one input and return the answer with its tier, cost, latency and trace."""
        return self._sync.run(route_one(self, x, modality, meta))

    def batch(self, xs: Sequence[Any], *, modality: str | None = None, return_exceptions: bool = False) -> list[Any]:
        """Route many inputs: one cache round trip, one tier call per group of inputs sent to the same tier.

        Failures are per input (a failed group call is retried input by input). ``return_exceptions=True`` puts an
        input's error (``AllTiersFailed``, ``InvalidInput``, ...) in its slot instead of raising the first one.
        """
        return self._sync.run(route_batch(self, xs, modality, return_exceptions))

    async def acall(self, x: Any, *, modality: str | None = None, **meta: Any) -> Routed:
        """``await router.acall(x)``: the same steps natively on the event loop (async tiers awaited, sync tiers in
        the bounded executor, the cache's async paths). Cancelling the task cancels the tier call in flight."""
        return await self._async.run(route_one(self, x, modality, meta))

    async def abatch(self, xs: Sequence[Any], *, modality: str | None = None,
                     return_exceptions: bool = False) -> list[Any]:
        """``batch`` on the async core: each round calls the tiers' groups concurrently."""
        return await self._async.run(route_batch(self, xs, modality, return_exceptions))

    def astream(self, x: Any, *, modality: str | None = None, **meta: Any) -> AsyncIterator[str | Routed]:
        """Route one input and pass the answering tier's text through as it arrives: ``str`` deltas, then one
        ``Routed``. See ``routing.streaming`` for which call streams and what a broken stream does."""
        return route_stream(self, x, modality, meta)

    def executor(self) -> ThreadPoolExecutor:
        """The bounded pool that runs sync tiers for the async core (started on first use)."""
        if self._executor is None:
            with self._executor_lock:
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(self.executor_workers, thread_name_prefix="tierswitch-tier")
        return self._executor

    def close(self) -> None:
        """Stop the executor's threads (tiers and caches are the caller's to close)."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    def emit_record(self, record: DecisionRecord) -> None:
        """Hand ``record`` to every hook; a failing hook is logged and counted, and the request goes on."""
        for hook in self.hooks:
            try:
                hook(record)
            except Exception:  # a hook must never fail a request
                self.stats.add(hook_errors=1)
                log.exception("decision hook %r failed", hook)
