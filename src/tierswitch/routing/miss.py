"""The miss loop of one request: probe, score, decide, call, accept or escalate, fall back; then store and finish.

Written once as a generator of effects (``routing.effects``), driven by the sync or the async shell. The steps
before the loop (``context``, ``decide``, ``next_after_failure``) are plain functions, shared with ``batch``.
"""

from __future__ import annotations

import time
from typing import Any

from tierswitch.errors import AllTiersFailed, TierFailure
from tierswitch.estimator.base import uncertainty_of
from tierswitch.policies.base import Policy
from tierswitch.reliability.fallback import FallbackPlan
from tierswitch.routing.admission import Admitted
from tierswitch.routing.effects import Call, Steps, Store
from tierswitch.routing.hooks import emit
from tierswitch.routing.state import RoutingState
from tierswitch.types import Accepting, Decision, Prediction, Routed, RoutingContext, TraceStep

__all__ = ["CACHE_MISS", "context", "decide", "may_escalate", "next_after_failure", "route_miss", "why_refused"]

CACHE_MISS = TraceStep("cache_miss")


def context(state: RoutingState, admitted: Admitted, meta: Any) -> RoutingContext:
    return RoutingContext(admitted.request, admitted.features, 0.0, admitted.capable, state.tiers, meta,
                          agreement=state.live_agreement.view)


def decide(state: RoutingState, ctx: RoutingContext) -> Decision:
    """The policy's decision, with the capability filter applied over it (it overrides any policy)."""
    decision = state.policy.decide(ctx)
    if decision.tier is None:
        return Decision(ctx.capable[-1], f"{decision.reason}; serving with the strongest capable tier")
    if decision.tier not in ctx.capable:
        order = state.tier_order
        later = [n for n in ctx.capable if order.index(n) > order.index(decision.tier)]
        tier = later[0] if later else ctx.capable[-1]
        return Decision(tier, f"{decision.reason}; {decision.tier} cannot take this input", decision.policy,
                        decision.propensity)
    return decision


def may_escalate(policy: Accepting) -> bool:
    """Whether ``policy`` can refuse an answer (only cascading policies override ``accept``)."""
    return type(policy).accept is not Policy.accept


def next_after_failure(state: RoutingState, ctx: RoutingContext, failed: str) -> str | None:
    """Fallback order: the next more expensive capable tier not tried yet, then cheaper ones, strongest first."""
    if state.fallback is False:
        return None
    if isinstance(state.fallback, FallbackPlan):
        return state.fallback.next_after(failed, ctx.capable, ctx.tried)
    up = ctx.next_capable(failed)
    if up is not None:
        return up
    cheaper = [n for n in reversed(ctx.capable) if n not in ctx.tried]
    return cheaper[0] if cheaper else None


def route_miss(state: RoutingState, admitted: Admitted, meta: Any, started: float,
               stream: bool = False) -> Steps[Routed]:
    """Route a request the cache did not answer. ``stream``: ask for the final tier's call to be streamed."""
    ctx = context(state, admitted, meta)
    trace: list[TraceStep] = [CACHE_MISS] if state.cache is not None and admitted.cache_keys else []
    failures: list[TierFailure] = []
    yield from _probe(state, ctx, trace, failures)
    ctx.score = state.estimator.score_features(ctx.features, ctx.request.payload)
    decision = decide(state, ctx)
    trace.append(TraceStep("decide", decision.tier, decision.reason))  # the score is on the Routed
    deciding = decision.policy or state.policy
    tier: str | None = decision.tier
    escalations = fallbacks = 0
    payload, length = ctx.request.payload, ctx.features.length
    while True:
        assert tier is not None
        prediction = ctx.predictions.get(tier)
        if prediction is None:
            ctx.tried.append(tier)
            last = stream and (ctx.next_capable(tier) is None or not may_escalate(deciding))
            outcome: Prediction | TierFailure = yield Call(tier, payload, length, last)
            if isinstance(outcome, TierFailure):
                failures.append(outcome)
                trace.append(TraceStep("failure", tier, str(outcome)))
                nxt = next_after_failure(state, ctx, tier)
                state.failure_log.note(state.stats, tier, outcome, nxt)
                if nxt is None:
                    state.stats.add(failures=len(failures), failed_requests=1)
                    raise AllTiersFailed(failures) from outcome
                trace.append(TraceStep("fallback", nxt, f"after {tier} failed"))
                fallbacks += 1
                tier = nxt
                continue
            prediction = ctx.predictions[tier] = outcome
            trace.append(TraceStep("call", tier, "", prediction.confidence, prediction.latency_s))
        if deciding.accept(ctx, prediction):
            trace.append(state.accepted_steps[tier])
            break
        nxt = ctx.next_capable(tier)
        if nxt is None:
            trace.append(TraceStep("accept", tier, "no stronger capable tier left"))
            break
        trace.append(TraceStep("escalate", nxt, f"{tier} {why_refused(ctx, tier, prediction)}"))
        escalations += 1
        tier = nxt
    # every call this request made: probe, cascade steps, and what the policy spent verifying answers
    cost = sum([p.cost for p in ctx.predictions.values()]) + ctx.extra_cost
    if state.cache is not None and (tier in state.always_cacheable or any(n == tier for n, _ in admitted.cache_keys)):
        yield Store(ctx.request.digest, prediction)
    routed = Routed(
        prediction.output, tier, cost, time.perf_counter() - started, False, ctx.score, tuple(trace),
        prediction.confidence, prediction.probs, prediction.tier_version, ctx.request.digest,
        next(state.request_ids), prediction.usage,
    )
    state.stats.served_one(tier, escalations, fallbacks, len(failures))
    if state.hooks:
        emit(state, routed, ctx, decision)
    return routed


def _probe(state: RoutingState, ctx: RoutingContext, trace: list[TraceStep],
           failures: list[TierFailure]) -> Steps[None]:
    """Run the probe tier (if the estimator has one and it can take the input) and record its uncertainty."""
    probe = state.estimator.probe
    if probe is None or probe not in ctx.capable:
        return
    ctx.tried.append(probe)
    outcome: Prediction | TierFailure = yield Call(probe, ctx.request.payload, ctx.features.length)
    if isinstance(outcome, TierFailure):
        failures.append(outcome)
        trace.append(TraceStep("failure", probe, f"probe: {outcome}"))
        state.failure_log.note(state.stats, probe, outcome, None)
        return
    ctx.predictions[probe] = outcome
    ctx.features.uncertainty = uncertainty_of(outcome, state.estimator.uncertainty)
    trace.append(TraceStep("probe", probe, "", outcome.confidence, outcome.latency_s))


def why_refused(ctx: RoutingContext, tier: str, prediction: Prediction) -> str:
    """Why a prediction was refused: the verdict the policy wrote (a verifier's score), else the confidence."""
    verdict = ctx.verdicts.get(tier)
    if verdict:
        return verdict
    value = prediction.confidence
    return f"confidence {'n/a' if value is None else f'{value:.3f}'} too low"
