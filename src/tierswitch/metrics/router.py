"""Metrics of a router: a decision hook for per-request figures, collectors for everything counted elsewhere.

``RouterMetrics(router)`` exports, with a ``router`` label:

- from the decision hook (per answered request): ``tierswitch_request_latency_seconds`` (histogram by serving tier
  and cached), ``tierswitch_request_cost_total`` (by tier), ``tierswitch_escalations_by_tier_total`` and
  ``tierswitch_fallbacks_by_tier_total`` (by from/to tier, read from the trace);
- from ``router.stats`` at scrape time: ``tierswitch_requests_total`` (by serving tier) and every router counter as
  ``tierswitch_router_<name>_total`` (escalations, fallbacks, failures, failed_requests, cache_hits, hook_errors ...);
- from ``router.cache.stats``: hits, misses, errors, sets, corrupt, rejected (by tier), evictions, entries, and the
  Redis cache's breaker when it has one;
- from every ``Guarded`` tier: attempts, failures by kind, retries, hung/abandoned calls, breaker state and trips;
- from anything else handed to ``watch`` (distiller, distillation feed, sample buffer): its counters.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from tierswitch.metrics.registry import Family, Registry, check_name, default_registry
from tierswitch.types import DecisionRecord

if TYPE_CHECKING:
    from tierswitch.router import Router

__all__ = ["DEFAULT_GAUGES", "RouterMetrics", "source_stats"]

DEFAULT_GAUGES = frozenset({"fresh", "pending", "in_flight", "hung", "threads", "size", "entries", "depth", "lag",
                            "version", "serving_version", "state", "state_code", "open", "backlog", "reservoir"})
_CACHE_COUNTERS = ("hits", "misses", "errors", "sets", "corrupt", "rejected", "bytes_read", "bytes_written")
_GUARD_COUNTERS = ("attempts", "successes", "retries", "retries_exhausted")
_FAILURE_KINDS = ("errors", "timeouts", "saturated", "circuit_open")


def source_stats(source: Any) -> Mapping[str, Any]:
    """Numbers from a stats source: a callable returning a mapping, or an object with a ``stats()`` method, a
    ``counters`` mapping, a ``stats`` mapping, or a ``snapshot()`` method (tried in that order)."""
    if isinstance(source, Mapping):
        return source
    for attr in ("stats", "counters", "snapshot"):
        value = getattr(source, attr, None)
        if isinstance(value, Mapping):
            return value
        if callable(value):
            result = value()
            if isinstance(result, Mapping):
                return result
    if callable(source):
        result = source()
        if isinstance(result, Mapping):
            return result
    raise TypeError(f"cannot read stats from {type(source).__name__}: give a mapping, a callable or an object "
                    "with stats()/counters/snapshot()")


def _flatten(stats: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, float]]:
    for key, value in stats.items():
        name = f"{prefix}{key}"
        if isinstance(value, bool):
            yield name, float(value)
        elif isinstance(value, (int, float)):
            yield name, float(value)
        elif isinstance(value, Mapping):
            yield from _flatten(value, name + "_")


def _clean(name: str) -> str:
    return "".join(c if c.isalnum() or c == "_" else "_" for c in name)


class RouterMetrics:
    """Prometheus metrics for ``router`` in ``registry`` (default: the process-wide one that ``serve_metrics``
    serves), labelled ``router=name`` (each router in a registry needs its own name).

    ``hook=True`` adds a decision hook for latency histograms and per-tier escalation/fallback counts; without it
    only the counters read at scrape time are exported (and the router builds no decision records for metrics).
    """

    def __init__(self, router: Router, registry: Registry | None = None, *, name: str = "default",
                 hook: bool = True) -> None:
        self.router = router
        self.registry = registry if registry is not None else default_registry()
        self.registry.claim(f"router={name}")
        self.name = name
        self._watched: list[tuple[str, Any, frozenset[str]]] = []
        reg = self.registry
        self.latency = reg.histogram("tierswitch_request_latency_seconds",
                                     "Router wall time per answered request.", ("router", "tier", "cached"))
        self.cost = reg.counter("tierswitch_request_cost_total",
                                "Summed cost of answered requests, by serving tier (tiers' cost unit).",
                                ("router", "tier"))
        self.escalations = reg.counter("tierswitch_escalations_by_tier_total",
                                       "Cascade escalations, from the tier whose answer was not confident enough.",
                                       ("router", "from_tier", "to_tier"))
        self.fallbacks = reg.counter("tierswitch_fallbacks_by_tier_total",
                                     "Fallbacks after a tier failed, in answered requests.",
                                     ("router", "from_tier", "to_tier"))
        reg.add_collector(self._collect)
        if hook:
            router.add_hook(self.observe)

    def watch(self, prefix: str, source: Any, *, gauges: Iterable[str] = DEFAULT_GAUGES) -> None:
        """Export ``source``'s numbers (see ``source_stats``) as ``tierswitch_<prefix>_<key>_total`` counters, or
        ``tierswitch_<prefix>_<key>`` gauges for keys in ``gauges``. Nested mappings become ``<key>_<subkey>``.
        E.g. ``watch("distill", distiller)``, ``watch("distill_feed", feed)``, ``watch("buffer", buffer)``."""
        check_name(f"tierswitch_{prefix}")
        self._watched.append((prefix, source, frozenset(gauges)))

    # -- hook -----------------------------------------------------------------------------------------------
    def observe(self, record: DecisionRecord) -> None:
        """The decision hook: latency, cost, and escalations/fallbacks read from the trace."""
        r = self.name
        self.latency.observe(record.latency_s, router=r, tier=record.tier, cached=str(record.cached).lower())
        if record.cost:
            self.cost.inc(record.cost, router=r, tier=record.tier)
        current: str | None = None
        for step in record.trace:
            if step.kind in ("call", "failure", "probe", "decide"):
                current = step.tier
            elif step.kind == "escalate":
                self.escalations.inc(router=r, from_tier=current or "", to_tier=step.tier or "")
                current = step.tier
            elif step.kind == "fallback":
                self.fallbacks.inc(router=r, from_tier=current or "", to_tier=step.tier or "")
                current = step.tier

    # -- collectors -----------------------------------------------------------------------------------------
    def _collect(self) -> list[Family]:
        r = self.name
        snap = self.router.stats.snapshot()
        fams = [Family("tierswitch_requests_total", "counter", "Answered requests, by serving tier.")]
        for tier, n in sorted(snap.pop("served", {}).items()):
            fams[0].add(n, router=r, tier=tier)
        for key, n in sorted(snap.items()):
            if isinstance(n, (int, float)):
                fams.append(Family(f"tierswitch_router_{_clean(key)}_total", "counter",
                                   f"Router counter {key!r}.").add(n, router=r))
        fams.extend(self._cache_families())
        fams.extend(self._tier_families())
        for prefix, source, gauges in self._watched:
            for key, value in _flatten(source_stats(source)):
                key = _clean(key)
                gauge = any(key == g or key.endswith("_" + g) for g in gauges)
                name = f"tierswitch_{prefix}_{key}" + ("" if gauge else "_total")
                fams.append(Family(name, "gauge" if gauge else "counter", f"{prefix} {key}.").add(value, router=r))
        return fams

    def _cache_families(self) -> list[Family]:
        cache = self.router.cache
        if cache is None:
            return []
        r = self.name
        fams = []
        tiers = dict(cache.stats.tiers)
        for counter in _CACHE_COUNTERS:
            fam = Family(f"tierswitch_cache_{counter}_total", "counter", f"Cache {counter.replace('_', ' ')}, by tier.")
            for tier, stats in sorted(tiers.items()):
                fam.add(getattr(stats, counter), router=r, tier=tier)
            fams.append(fam)
        fams.append(Family("tierswitch_cache_evictions_total", "counter", "Entries evicted to keep the cache bounded.")
                    .add(cache.stats.evictions, router=r))
        try:
            fams.append(Family("tierswitch_cache_entries", "gauge", "Entries held by an in-process cache.")
                        .add(len(cache), router=r))  # type: ignore[arg-type]
        except TypeError:  # a backend without a cheap len (Redis)
            pass
        health: Callable[[], Mapping[str, Any]] | None = getattr(cache, "health", None)
        if callable(health):
            h = health()
            fams.append(Family("tierswitch_cache_breaker_open", "gauge", "1 while the cache backend's breaker is open.")
                        .add(float(bool(h.get("open"))), router=r))
            fams.append(Family("tierswitch_cache_breaker_trips_total", "counter", "Times the cache breaker opened.")
                        .add(h.get("trips", 0), router=r))
            fams.append(Family("tierswitch_cache_breaker_skipped_total", "counter",
                               "Cache calls skipped while its breaker was open.").add(h.get("skipped", 0), router=r))
        return fams

    def _tier_families(self) -> list[Family]:
        from tierswitch.reliability.guarded import Guarded

        r = self.name
        attempts = {c: Family(f"tierswitch_tier_{c}_total", "counter", f"Guarded tier {c.replace('_', ' ')}.")
                    for c in _GUARD_COUNTERS}
        failures = Family("tierswitch_tier_failures_total", "counter",
                          "Guarded tier failures by kind (errors, timeouts, saturated, circuit_open).")
        hung = Family("tierswitch_tier_hung_calls", "gauge", "Timed-out calls still running on the tier's pool.")
        abandoned = Family("tierswitch_tier_abandoned_calls_total", "counter", "Calls abandoned at their timeout.")
        state = Family("tierswitch_breaker_state", "gauge", "Circuit breaker state: 0 closed, 1 half-open, 2 open.")
        opened = Family("tierswitch_breaker_opened_total", "counter", "Times the tier's breaker opened.")
        refused = Family("tierswitch_breaker_refused_total", "counter", "Calls refused by an open breaker.")
        for tier_name, tier in self.router.tiers.items():
            if not isinstance(tier, Guarded):
                continue
            snap = tier.snapshot()
            for c, fam in attempts.items():
                fam.add(snap.get(c, 0), router=r, tier=tier_name)
            for kind in _FAILURE_KINDS:
                failures.add(snap.get(kind, 0), router=r, tier=tier_name, kind=kind)
            hung.add(snap["pool"]["hung"], router=r, tier=tier_name)
            abandoned.add(snap["pool"]["abandoned"], router=r, tier=tier_name)
            if snap["breaker"] is not None:
                state.add(snap["breaker"]["state_code"], router=r, tier=tier_name)
                opened.add(snap["breaker"]["opened"], router=r, tier=tier_name)
                refused.add(snap["breaker"]["refused"], router=r, tier=tier_name)
        return [*attempts.values(), failures, hung, abandoned, state, opened, refused]
