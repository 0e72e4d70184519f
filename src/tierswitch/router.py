"""The middleware: one request through cache, estimator, capability filter, policy, tiers and hooks.

The synchronous core is ``Router.__call__``; ``batch`` (in ``routing.batch``) and ``acall`` are thin layers over the
same steps. Every request leaves a trace (what was tried and why) and, when hooks are attached, a
``DecisionRecord`` (for logs, tuning and distillation; built in ``routing.hooks``). Identical misses in flight
share one computation (``routing.flight``).
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from tierswitch.cache.base import Cache
from tierswitch.cache.memory import MemoryCache
from tierswitch.cache.singleflight import SingleFlight
from tierswitch.digest import digest_of
from tierswitch.errors import AllTiersFailed, ConfigError, NoCapableTier, TierFailure
from tierswitch.estimator.base import Estimator, uncertainty_of
from tierswitch.estimator.complexity import ComplexityEstimator
from tierswitch.policies.base import Policy
from tierswitch.reliability.fallback import FallbackPlan, fallback_from_config
from tierswitch.routing.flight import route_in_flight
from tierswitch.routing.hooks import Hook, decision_record, learner_hooks, send_feedback
from tierswitch.routing.stats import LiveAgreement, RouterStats
from tierswitch.tiers.base import Tier
from tierswitch.types import Decision, DecisionRecord, Features, Prediction, Request, Routed, RoutingContext, TraceStep

__all__ = ["Router"]

log = logging.getLogger("tierswitch.router")
_DEFAULT: Any = object()
_CACHE_MISS = TraceStep("cache_miss")


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
        self.single_flight = SingleFlight() if single_flight is _DEFAULT else single_flight
        self.max_input_bytes = max_input_bytes
        self.max_batch = max_batch
        self.stats = RouterStats()
        self.live_agreement = LiveAgreement()
        self._ids = itertools.count(1)
        self._capable_by_modality: dict[str, tuple[tuple[str, ...], int]] = {}
        self._accepted = {name: TraceStep("accept", name) for name in names}  # immutable, shared by every request

    @classmethod
    def from_config(cls, config: Any, tiers: Any, **overrides: Any) -> Router:
        """A router from a YAML/TOML path or a dict (see ``tierswitch.config``) over ``tiers``: ``Tier`` objects,
        or a mapping of names to tiers or plain inference functions. ``overrides`` go to the constructor."""
        from tierswitch.assembly.from_config import router_from_config

        return router_from_config(config, tiers, **overrides)

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

    def __call__(self, x: Any, *, modality: str | None = None, **meta: Any) -> Routed:
        """Route one input and return the answer with its tier, cost, latency and trace."""
        started = time.perf_counter()
        request, features, capable = self._admit(x, modality)
        flights = self.single_flight
        epoch = flights.completed if flights is not None else 0  # read before the lookup: see routing.flight
        if self.cache is not None:
            hit = self.cache.lookup(request.digest, [(n, self.tiers[n].version) for n in reversed(capable)])
            if hit is not None:
                return self._finish_hit(request, features, capable, hit, meta, started)
        if flights is not None:  # identical misses in flight share one computation (routing.flight)
            return route_in_flight(self, request, features, capable, meta, started, epoch)
        return self._route_miss(request, features, capable, meta, started)

    def batch(self, xs: Sequence[Any], *, modality: str | None = None) -> list[Routed]:
        """Route many inputs: one cache round trip, one tier call per group of inputs sent to the same tier."""
        from tierswitch.routing.batch import route_batch

        return route_batch(self, xs, modality)

    async def acall(self, x: Any, *, modality: str | None = None, **meta: Any) -> Routed:
        """``await router.acall(x)``: the sync core run in the event loop's executor, so tiers never block it."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, functools.partial(self.__call__, x, modality=modality, **meta))

    # -- the steps ------------------------------------------------------------------------------------------
    def _admit(self, x: Any, modality: str | None) -> tuple[Request, Features, tuple[str, ...]]:
        """Validate and measure the input, digest it, and apply the capability filter."""
        features = self.estimator.features(x, modality)
        request = Request(x, features.modality, digest_of(x, self.max_input_bytes))
        capable = self._capable(features.modality, features.length)
        if not capable:
            accepts = "; ".join(f"{n}: {self.tiers[n].capabilities.describe()}" for n in self.tier_order)
            raise NoCapableTier(
                f"no tier accepts a {features.modality} input of length {features.length} ({accepts}); "
                "add a tier that does, raise a max_length, or pass modality= if detection was wrong"
            )
        return request, features, capable

    def _capable(self, modality: str, length: int) -> tuple[str, ...]:
        """Names of the tiers that accept this input, cheapest first.

        Per modality, the tiers that take it and the smallest length cap among them are computed once; an input
        under that cap (the usual case) gets the precomputed tuple without looking at each tier.
        """
        known = self._capable_by_modality.get(modality)
        if known is None:
            names = tuple(n for n in self.tier_order if self.tiers[n].accepts(modality, 1))
            caps = [self.tiers[n].capabilities.max_length for n in names]
            known = (names, min((c for c in caps if c is not None), default=2**62))
            self._capable_by_modality[modality] = known
        if length <= known[1]:
            return known[0]
        return tuple(n for n in known[0] if self.tiers[n].accepts(modality, length))

    def _context(self, request: Request, features: Features, capable: tuple[str, ...], meta: Any) -> RoutingContext:
        return RoutingContext(request, features, 0.0, capable, self.tiers, meta, agreement=self.live_agreement.view)

    def _score(self, ctx: RoutingContext, trace: list[TraceStep], failures: list[TierFailure]) -> None:
        """Run the probe tier (if the estimator has one and it can take the input), then score."""
        probe = self.estimator.probe
        if probe is not None and probe in ctx.capable:
            try:
                prediction = self._call_tier(ctx, probe)
            except TierFailure as failure:
                failures.append(failure)
                trace.append(TraceStep("failure", probe, f"probe: {failure}"))
            else:
                ctx.features.uncertainty = uncertainty_of(prediction, self.estimator.uncertainty)
                trace.append(TraceStep("probe", probe, "", prediction.confidence, prediction.latency_s))
        ctx.score = self.estimator.score_features(ctx.features, ctx.request.payload)

    def _decide(self, ctx: RoutingContext) -> Decision:
        decision = self.policy.decide(ctx)
        if decision.tier is None:
            return Decision(ctx.capable[-1], f"{decision.reason}; serving with the strongest capable tier")
        if decision.tier not in ctx.capable:  # the capability filter overrides any policy
            later = [n for n in ctx.capable if self.tier_order.index(n) > self.tier_order.index(decision.tier)]
            tier = later[0] if later else ctx.capable[-1]
            return Decision(tier, f"{decision.reason}; {decision.tier} cannot take this input", decision.policy,
                            decision.propensity)
        return decision

    def _call_tier(self, ctx: RoutingContext, name: str) -> Prediction:
        ctx.tried.append(name)
        prediction = self.tiers[name].predict_one(ctx.request.payload, ctx.features.length)
        ctx.predictions[name] = prediction
        return prediction

    def _next_after_failure(self, ctx: RoutingContext, failed: str) -> str | None:
        """Fallback order: the next more expensive capable tier not tried yet, then cheaper ones, strongest first."""
        if self.fallback is False:
            return None
        if isinstance(self.fallback, FallbackPlan):
            return self.fallback.next_after(failed, ctx.capable, ctx.tried)
        up = ctx.next_capable(failed)
        if up is not None:
            return up
        cheaper = [n for n in reversed(ctx.capable) if n not in ctx.tried]
        return cheaper[0] if cheaper else None

    def _route_miss(
        self, request: Request, features: Features, capable: tuple[str, ...], meta: Any, started: float
    ) -> Routed:
        ctx = self._context(request, features, capable, meta)
        trace: list[TraceStep] = [_CACHE_MISS] if self.cache is not None else []
        failures: list[TierFailure] = []
        self._score(ctx, trace, failures)
        decision = self._decide(ctx)
        trace.append(TraceStep("decide", decision.tier, decision.reason))  # the score is on the Routed
        deciding = decision.policy or self.policy
        tier: str | None = decision.tier
        escalations = fallbacks = 0
        while True:
            assert tier is not None
            prediction = ctx.predictions.get(tier)
            if prediction is None:
                try:
                    prediction = self._call_tier(ctx, tier)
                except TierFailure as failure:
                    failures.append(failure)
                    trace.append(TraceStep("failure", tier, str(failure)))
                    nxt = self._next_after_failure(ctx, tier)
                    if nxt is None:
                        self.stats.add(failures=len(failures), failed_requests=1)
                        raise AllTiersFailed(failures) from failure
                    trace.append(TraceStep("fallback", nxt, f"after {tier} failed"))
                    fallbacks += 1
                    tier = nxt
                    continue
                trace.append(TraceStep("call", tier, "", prediction.confidence, prediction.latency_s))
            if deciding.accept(ctx, prediction):
                trace.append(self._accepted[tier])
                break
            nxt = ctx.next_capable(tier)
            if nxt is None:
                trace.append(TraceStep("accept", tier, "no stronger capable tier left"))
                break
            trace.append(TraceStep("escalate", nxt, f"{tier} confidence {_fmt(prediction.confidence)} too low"))
            escalations += 1
            tier = nxt
        cost = sum([p.cost for p in ctx.predictions.values()])  # every call this request made, probe included
        if self.cache is not None:
            self.cache.set(request.digest, prediction, checked=True)
        routed = Routed(
            prediction.output, tier, cost, time.perf_counter() - started, False, ctx.score, tuple(trace),
            prediction.confidence, prediction.probs, prediction.tier_version, request.digest, next(self._ids),
        )
        self.stats.served_one(tier, escalations, fallbacks, len(failures))
        if self.hooks:
            self._emit(routed, ctx, decision)
        return routed

    def _finish_hit(
        self, request: Request, features: Features, capable: tuple[str, ...], hit: Prediction, meta: Any,
        started: float,
    ) -> Routed:
        trace = (TraceStep("cache_hit", hit.tier, f"version {hit.tier_version}", hit.confidence),)
        routed = Routed(
            hit.output, hit.tier, 0.0, time.perf_counter() - started, True, None, trace, hit.confidence, hit.probs,
            hit.tier_version, request.digest, next(self._ids),
        )
        self.stats.served_one(hit.tier, cache_hit=True)
        if self.hooks:
            ctx = self._context(request, features, capable, meta)
            self._emit(routed, ctx, Decision(hit.tier, "cache hit"))
        return routed

    def _emit(self, routed: Routed, ctx: RoutingContext, decision: Decision) -> None:
        self.emit_record(decision_record(routed, ctx, decision, self.cache))

    def emit_record(self, record: DecisionRecord) -> None:
        """Hand ``record`` to every hook; a failing hook is logged and counted, and the request goes on."""
        for hook in self.hooks:
            try:
                hook(record)
            except Exception:  # a hook must never fail a request
                self.stats.add(hook_errors=1)
                log.exception("decision hook %r failed", hook)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"

