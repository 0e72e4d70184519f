"""``Router.batch``: the same steps as a single request, with one cache round trip and one tier call per group.

Inputs move through the cascade in rounds: every round groups the pending inputs by the tier they are waiting for
and calls each tier once with its whole group.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from tierswitch.errors import AllTiersFailed, InputTooLarge, InvalidInput, NoCapableTier, TierFailure
from tierswitch.estimator.base import uncertainty_of
from tierswitch.types import Decision, Prediction, Routed, RoutingContext, TraceStep

if TYPE_CHECKING:
    from tierswitch.router import Router

__all__ = ["route_batch"]


class _Pending:
    """One input's state while its batch is routed."""

    __slots__ = ("index", "ctx", "decision", "trace", "failures", "tier", "done", "escalations", "fallbacks")

    def __init__(self, index: int, ctx: RoutingContext) -> None:
        self.index = index
        self.ctx = ctx
        self.trace: list[TraceStep] = []
        self.failures: list[TierFailure] = []
        self.decision: Decision | None = None
        self.tier: str | None = None
        self.done: Prediction | None = None
        self.escalations = 0
        self.fallbacks = 0


def _call_group(router: Router, tier: str, items: list[_Pending]) -> list[Prediction] | TierFailure:
    try:
        predictions = router.tiers[tier].predict(
            [p.ctx.request.payload for p in items], [p.ctx.features.length for p in items]
        )
    except TierFailure as failure:
        return failure
    for p, prediction in zip(items, predictions):
        p.ctx.tried.append(tier)
        p.ctx.predictions[tier] = prediction
    return predictions


def route_batch(router: Router, xs: Sequence[Any], modality: str | None) -> list[Routed]:
    """Route ``xs`` together; results come back in input order. Invalid inputs (and inputs no tier accepts) fail the
    call before any tier runs, with the index of the first bad input in the message."""
    started = time.perf_counter()
    if len(xs) > router.max_batch:
        raise InputTooLarge(f"batch of {len(xs)} inputs is over max_batch={router.max_batch}; split it")
    admitted = []
    for i, x in enumerate(xs):
        try:
            admitted.append(router._admit(x, modality))
        except (InvalidInput, NoCapableTier) as exc:
            raise type(exc)(f"batch input {i}: {exc}") from exc
    results: list[Routed | None] = [None] * len(xs)
    hits: list[Prediction | None] = [None] * len(xs)
    if router.cache is not None:
        keys, owners = [], []
        for i, (request, _, capable) in enumerate(admitted):
            for name in reversed(capable):
                keys.append((name, router.tiers[name].version, request.digest))
                owners.append(i)
        for i, found in zip(owners, router.cache.get_many(keys)):
            if found is not None and hits[i] is None:
                hits[i] = found
    pending: list[_Pending] = []
    for i, (request, features, capable) in enumerate(admitted):
        if hits[i] is not None:
            results[i] = router._finish_hit(request, features, capable, hits[i], {}, started)  # type: ignore[arg-type]
        else:
            pending.append(_Pending(i, router._context(request, features, capable, {})))
    _probe_and_decide(router, pending)
    active = [p for p in pending if p.tier is not None]
    while active:
        groups: dict[str, list[_Pending]] = defaultdict(list)
        for p in active:
            groups[p.tier].append(p)  # type: ignore[index]
        for tier, items in groups.items():
            _advance_group(router, tier, items)
        active = [p for p in active if p.done is None]
    stored = [(p.ctx.request.digest, p.done) for p in pending if p.done is not None]
    if router.cache is not None and stored:
        router.cache.set_many(stored, checked=True)  # type: ignore[arg-type]
    elapsed = time.perf_counter() - started
    for p in pending:
        results[p.index] = _finish(router, p, elapsed)
    return results  # type: ignore[return-value]


def _probe_and_decide(router: Router, pending: list[_Pending]) -> None:
    probe = router.estimator.probe
    if probe is not None:
        probed = [p for p in pending if probe in p.ctx.capable]
        if probed:
            outcome = _call_group(router, probe, probed)
            for p in probed:
                if isinstance(outcome, TierFailure):
                    p.ctx.tried.append(probe)
                    p.failures.append(outcome)
                    p.trace.append(TraceStep("failure", probe, f"probe: {outcome}"))
                else:
                    prediction = p.ctx.predictions[probe]
                    p.ctx.features.uncertainty = uncertainty_of(prediction, router.estimator.uncertainty)
                    p.trace.append(TraceStep("probe", probe, "", prediction.confidence, prediction.latency_s))
    for p in pending:
        p.ctx.score = router.estimator.score_features(p.ctx.features, p.ctx.request.payload)
        p.decision = router._decide(p.ctx)
        p.tier = p.decision.tier
        p.trace.append(TraceStep("decide", p.tier, p.decision.reason))


def _advance_group(router: Router, tier: str, items: list[_Pending]) -> None:
    """Call ``tier`` for the items not already answered by it (a probe), then accept or escalate each."""
    to_call = [p for p in items if tier not in p.ctx.predictions]
    if to_call:
        outcome = _call_group(router, tier, to_call)
        if isinstance(outcome, TierFailure):
            items = [p for p in items if tier in p.ctx.predictions]  # the probed ones still have an answer
            for p in to_call:
                p.ctx.tried.append(tier)
                p.failures.append(outcome)
                p.trace.append(TraceStep("failure", tier, str(outcome)))
                nxt = router._next_after_failure(p.ctx, tier)
                if nxt is None:
                    router.stats.add(failures=len(p.failures), failed_requests=1)
                    raise AllTiersFailed(p.failures) from outcome
                p.trace.append(TraceStep("fallback", nxt, f"after {tier} failed"))
                p.fallbacks += 1
                p.tier = nxt
        else:
            for p in to_call:
                prediction = p.ctx.predictions[tier]
                p.trace.append(TraceStep("call", tier, "", prediction.confidence, prediction.latency_s))
    for p in items:
        prediction = p.ctx.predictions[tier]
        deciding = (p.decision.policy if p.decision else None) or router.policy
        nxt = None if deciding.accept(p.ctx, prediction) else p.ctx.next_capable(tier)
        if nxt is None:
            p.trace.append(TraceStep("accept", tier))
            p.done = prediction
        else:
            p.trace.append(TraceStep("escalate", nxt, f"{tier} confidence too low"))
            p.escalations += 1
            p.tier = nxt


def _finish(router: Router, p: _Pending, elapsed: float) -> Routed:
    prediction = p.done
    assert prediction is not None
    ctx = p.ctx
    cost = sum([q.cost for q in ctx.predictions.values()])
    trace = ([TraceStep("cache_miss")] if router.cache is not None else []) + p.trace
    routed = Routed(
        prediction.output, prediction.tier, cost, elapsed, False, ctx.score, tuple(trace), prediction.confidence,
        prediction.probs, prediction.tier_version, ctx.request.digest, next(router._ids),
    )
    router.stats.served_one(prediction.tier, p.escalations, p.fallbacks, len(p.failures))
    if router.hooks:
        router._emit(routed, ctx, p.decision or Decision(prediction.tier, ""))
    return routed
