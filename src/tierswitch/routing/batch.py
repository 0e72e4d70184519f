"""``Router.batch``/``abatch``: the same steps as a single request, with one cache round trip and one tier call per
group.

Inputs move through the cascade in rounds: every round groups the pending inputs by the tier they are waiting for
and calls each tier once with its whole group (concurrently across tiers on the async core). Failures are per
item: when a group call fails, its inputs are retried one by one, so one bad input falls back alone and never
escalates (or fails) the rest of its group. With ``return_exceptions=True`` an input that no tier could answer gets
its ``AllTiersFailed`` (or an admission error) in its slot; otherwise the first such error is raised after every
good answer has been cached.
"""

from __future__ import annotations

import copy
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from tierswitch.errors import AllTiersFailed, InvalidInput, NoCapableTier, TierFailure, TierswitchError
from tierswitch.estimator.base import uncertainty_of
from tierswitch.routing.admission import Admitted, admit
from tierswitch.routing.effects import Call, CallGroup, GetMany, Parallel, Steps, StoreMany
from tierswitch.routing.hits import finish_hit
from tierswitch.routing.hooks import emit
from tierswitch.routing.miss import CACHE_MISS, context, decide, next_after_failure, why_refused
from tierswitch.routing.state import RoutingState
from tierswitch.types import Decision, Prediction, Routed, RoutingContext, TraceStep
from tierswitch.validation import batch_inputs

__all__ = ["route_batch"]


class _Pending:
    """One input's state while its batch is routed."""

    __slots__ = ("index", "admitted", "ctx", "decision", "trace", "failures", "tier", "done", "escalations",
                 "fallbacks", "error")

    def __init__(self, index: int, admitted: Admitted, ctx: RoutingContext) -> None:
        self.index = index
        self.admitted = admitted
        self.ctx = ctx
        self.trace: list[TraceStep] = []
        self.failures: list[TierFailure] = []
        self.decision: Decision | None = None
        self.tier: str | None = None
        self.done: Prediction | None = None
        self.escalations = 0
        self.fallbacks = 0
        self.error: AllTiersFailed | None = None


def route_batch(state: RoutingState, xs: Sequence[Any], modality: str | None,
                return_exceptions: bool = False) -> Steps[list[Any]]:
    """The steps of ``router.batch(xs)``; results come back in input order."""
    started = time.perf_counter()
    items = batch_inputs(xs, state.max_batch)
    results: list[Any] = [None] * len(items)
    admitted: list[Admitted | None] = []
    for i, x in enumerate(items):
        try:
            admitted.append(admit(state, x, modality))
        except (InvalidInput, NoCapableTier) as exc:
            error = copy.copy(exc)  # same class and attributes (e.g. the field at fault), the index in its message
            error.args = (f"batch input {i}: {exc}",)
            if not return_exceptions:
                raise error from exc
            results[i] = error
            admitted.append(None)
    hits = yield from _lookup(state, admitted)
    pending: list[_Pending] = []
    for i, adm in enumerate(admitted):
        if adm is None:
            continue
        hit = hits[i]
        if hit is not None:
            results[i] = finish_hit(state, adm, hit, {}, started)
        else:
            pending.append(_Pending(i, adm, context(state, adm, {})))
    yield from _probe_and_decide(state, pending)
    active = [p for p in pending if p.tier is not None]
    while active:
        groups: dict[str, list[_Pending]] = defaultdict(list)
        for p in active:
            assert p.tier is not None
            groups[p.tier].append(p)
        yield from _advance(state, groups)
        active = [p for p in active if p.done is None and p.error is None]
    if state.cache is not None:
        stored = [(p.ctx.request.digest, p.done) for p in pending
                  if p.done is not None and any(n == p.done.tier for n, _ in p.admitted.cache_keys)]
        yield StoreMany(stored)
    elapsed = time.perf_counter() - started
    for p in pending:
        results[p.index] = p.error if p.error is not None else _finish(state, p, elapsed)
    if not return_exceptions:
        for r in results:
            if isinstance(r, TierswitchError):
                raise r
    return results


def _lookup(state: RoutingState, admitted: list[Admitted | None]) -> Steps[list[Prediction | None]]:
    hits: list[Prediction | None] = [None] * len(admitted)
    if state.cache is None:
        return hits
    keys, owners = [], []
    for i, adm in enumerate(admitted):
        if adm is not None:
            for name, version in adm.cache_keys:
                keys.append((name, version, adm.request.digest))
                owners.append(i)
    if keys:
        found_all: list[Prediction | None] = yield GetMany(keys)
        for i, found in zip(owners, found_all):
            if found is not None and hits[i] is None:
                hits[i] = found
    return hits


def _call_each(state: RoutingState, calls: dict[str, list[_Pending]]) -> Steps[dict[str, list[Any]]]:
    """Call every tier with its group at once; a group whose call failed is retried item by item, so each input
    gets its own ``Prediction`` or ``TierFailure``."""
    names = list(calls)
    outcomes = yield Parallel([
        CallGroup(t, [p.ctx.request.payload for p in calls[t]], [p.ctx.features.length for p in calls[t]])
        for t in names
    ])
    per_item: dict[str, list[Any]] = {}
    retry: list[tuple[str, _Pending]] = []
    for t, outcome in zip(names, outcomes):
        if isinstance(outcome, TierFailure) and len(calls[t]) > 1:
            retry += [(t, p) for p in calls[t]]
        else:
            per_item[t] = [outcome] * len(calls[t]) if isinstance(outcome, TierFailure) else outcome
    if retry:
        singles = yield Parallel([Call(t, p.ctx.request.payload, p.ctx.features.length) for t, p in retry])
        for (t, _), outcome in zip(retry, singles):
            per_item.setdefault(t, []).append(outcome)
    return per_item


def _probe_and_decide(state: RoutingState, pending: list[_Pending]) -> Steps[None]:
    probe = state.estimator.probe
    probed = [p for p in pending if probe is not None and probe in p.ctx.capable]
    if probe is not None and probed:
        outcomes = (yield from _call_each(state, {probe: probed}))[probe]
        for p, outcome in zip(probed, outcomes):
            p.ctx.tried.append(probe)
            if isinstance(outcome, TierFailure):
                p.failures.append(outcome)
                p.trace.append(TraceStep("failure", probe, f"probe: {outcome}"))
                state.failure_log.note(state.stats, probe, outcome, None)
            else:
                p.ctx.predictions[probe] = outcome
                p.ctx.features.uncertainty = uncertainty_of(outcome, state.estimator.uncertainty)
                p.trace.append(TraceStep("probe", probe, "", outcome.confidence, outcome.latency_s))
    for p in pending:
        p.ctx.score = state.estimator.score_features(p.ctx.features, p.ctx.request.payload)
        p.decision = decide(state, p.ctx)
        p.tier = p.decision.tier
        p.trace.append(TraceStep("decide", p.tier, p.decision.reason))


def _advance(state: RoutingState, groups: dict[str, list[_Pending]]) -> Steps[None]:
    """One round: call each tier for the inputs it has not answered yet (a probe may have), then accept, escalate or
    fall back per input."""
    calls = {t: [p for p in items if t not in p.ctx.predictions] for t, items in groups.items()}
    calls = {t: items for t, items in calls.items() if items}
    outcomes = (yield from _call_each(state, calls)) if calls else {}
    for tier, items in calls.items():
        for p, outcome in zip(items, outcomes[tier]):
            p.ctx.tried.append(tier)
            if isinstance(outcome, TierFailure):
                _fail(state, p, tier, outcome)
            else:
                p.ctx.predictions[tier] = outcome
                p.trace.append(TraceStep("call", tier, "", outcome.confidence, outcome.latency_s))
    for tier, items in groups.items():
        for p in items:
            prediction = p.ctx.predictions.get(tier)
            if prediction is None or p.tier != tier:
                continue  # failed this round: already falling back (or out of tiers)
            deciding = (p.decision.policy if p.decision else None) or state.policy
            nxt = None if deciding.accept(p.ctx, prediction) else p.ctx.next_capable(tier)
            if nxt is None:
                p.trace.append(TraceStep("accept", tier))
                p.done = prediction
            else:
                p.trace.append(TraceStep("escalate", nxt, f"{tier} {why_refused(p.ctx, tier, prediction)}"))
                p.escalations += 1
                p.tier = nxt


def _fail(state: RoutingState, p: _Pending, tier: str, failure: TierFailure) -> None:
    p.failures.append(failure)
    p.trace.append(TraceStep("failure", tier, str(failure)))
    nxt = next_after_failure(state, p.ctx, tier)
    state.failure_log.note(state.stats, tier, failure, nxt)
    if nxt is None:
        state.stats.add(failures=len(p.failures), failed_requests=1)
        p.error = AllTiersFailed(p.failures)
        p.error.__cause__ = failure
        return
    p.trace.append(TraceStep("fallback", nxt, f"after {tier} failed"))
    p.fallbacks += 1
    p.tier = nxt


def _finish(state: RoutingState, p: _Pending, elapsed: float) -> Routed:
    prediction = p.done
    assert prediction is not None
    ctx = p.ctx
    cost = sum([q.cost for q in ctx.predictions.values()]) + ctx.extra_cost
    trace = ([CACHE_MISS] if state.cache is not None and p.admitted.cache_keys else []) + p.trace
    routed = Routed(
        prediction.output, prediction.tier, cost, elapsed, False, ctx.score, tuple(trace), prediction.confidence,
        prediction.probs, prediction.tier_version, ctx.request.digest, next(state.request_ids), prediction.usage,
    )
    state.stats.served_one(prediction.tier, p.escalations, p.fallbacks, len(p.failures))
    if state.hooks:
        emit(state, routed, ctx, p.decision or Decision(prediction.tier, ""))
    return routed
