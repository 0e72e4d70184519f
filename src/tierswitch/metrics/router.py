"""Metrics of a router: a decision hook for per-request figures, collectors for everything counted elsewhere.

``RouterMetrics(router)`` exports, with a ``router`` label:

- from the decision hook (per answered request): ``tierswitch_request_latency_seconds`` (histogram by serving tier
  and cached), ``tierswitch_request_cost_total`` (by tier), ``tierswitch_escalations_by_tier_total`` and
  ``tierswitch_fallbacks_by_tier_total`` (by from/to tier) and ``tierswitch_failures_by_tier_total`` (by the tier
  that failed), read from the trace;
- from ``router.stats.snapshot()`` at scrape time: ``tierswitch_requests_total`` (by serving tier), every numeric
  router counter as ``tierswitch_router_<name>_total`` (escalations, fallbacks, failures, failed_requests,
  cache_hits, hook_errors ...), and every nested counter mapping as the same name with a ``tier`` label (``key``
  when its keys are not tier names) and, one level down, a ``reason`` label;
- from ``router.cache.stats``: hits, misses, errors, sets, corrupt, rejected (by tier), evictions, entries, and the
  Redis cache's breaker when it has one;
- from every ``Guarded`` tier: attempts, failures by kind, retries, hung/abandoned calls, breaker state and trips;
- from anything else handed to ``watch`` (distiller, distillation feed, sample buffer): its counters.

Counters and the histogram are ``prometheus_client`` instruments owned by this object (not registered on their
own); the scrape-time numbers are ``CounterMetricFamily``/``GaugeMetricFamily`` built from the live counters.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import CollectorRegistry

from tierswitch.metrics.registry import DEFAULT_BUCKETS, Registry, collector_for, default_registry
from tierswitch.types import DecisionRecord

if TYPE_CHECKING:
    from tierswitch.cache.base import Cache
    from tierswitch.tiers.base import Tier

__all__ = ["DEFAULT_GAUGES", "MetricsSource", "RouterMetrics", "registry_for", "source_stats"]


class _Snapshot(Protocol):
    def snapshot(self) -> Mapping[str, Any]: ...


class MetricsSource(Protocol):
    """What the metrics read of a router, and nothing more: a ``Router`` is one; so is anything shaped like it."""

    @property
    def stats(self) -> _Snapshot: ...

    @property
    def tiers(self) -> Mapping[str, Tier]: ...

    @property
    def cache(self) -> Cache | None: ...

    def add_hook(self, hook: Callable[[DecisionRecord], None]) -> None: ...

DEFAULT_GAUGES = frozenset({"fresh", "pending", "in_flight", "hung", "threads", "size", "entries", "depth", "lag",
                            "version", "serving_version", "state", "state_code", "open", "backlog", "reservoir"})
_CACHE_COUNTERS = ("hits", "misses", "errors", "sets", "corrupt", "rejected", "bytes_read", "bytes_written")
_GUARD_COUNTERS = ("attempts", "successes", "retries", "retries_exhausted")
_FAILURE_KINDS = ("errors", "timeouts", "saturated", "circuit_open")
_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


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


def _number(value: object) -> bool:
    return isinstance(value, (int, float))  # bool included: a flag exports as 0/1


def _flatten(stats: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, float]]:
    for key, value in stats.items():
        name = f"{prefix}{key}"
        if _number(value):
            yield name, float(value)
        elif isinstance(value, Mapping):
            yield from _flatten(value, name + "_")


def _clean(name: object) -> str:
    return "".join(c if c.isalnum() or c == "_" else "_" for c in str(name))


def _counter(name: str, doc: str, *labels: str) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, labels=labels)


def _gauge(name: str, doc: str, *labels: str) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=labels)


class RouterMetrics:
    """Prometheus metrics for ``router`` in ``registry`` (any ``prometheus_client.CollectorRegistry``; default:
    tierswitch's process-wide one that ``serve_metrics`` serves), labelled ``router=name`` (each router in a
    registry needs its own name).

    ``hook=True`` adds a decision hook for latency histograms and per-tier escalation/fallback/failure counts;
    without it only the counters read at scrape time are exported (and the router builds no decision records for
    metrics).
    """

    def __init__(self, router: MetricsSource, registry: CollectorRegistry | None = None, *, name: str = "default",
                 hook: bool = True) -> None:
        self.router = router
        self.registry: CollectorRegistry = registry if registry is not None else default_registry()
        collector = collector_for(self.registry)
        collector.claim(f"router={name}")
        self.name = name
        self.latency = Histogram("tierswitch_request_latency_seconds", "Router wall time per answered request.",
                                 ("router", "tier", "cached"), registry=None, buckets=DEFAULT_BUCKETS)
        self.cost = Counter("tierswitch_request_cost_total",
                            "Summed cost of answered requests, by serving tier (tiers' cost unit).",
                            ("router", "tier"), registry=None)
        self.escalations = Counter("tierswitch_escalations_by_tier_total",
                                   "Cascade escalations, from the tier whose answer was not confident enough.",
                                   ("router", "from_tier", "to_tier"), registry=None)
        self.fallbacks = Counter("tierswitch_fallbacks_by_tier_total",
                                 "Fallbacks after a tier failed, in answered requests.",
                                 ("router", "from_tier", "to_tier"), registry=None)
        self.failures = Counter("tierswitch_failures_by_tier_total",
                                "Tier calls (and probes) that failed, in answered requests, by the tier that failed.",
                                ("router", "tier"), registry=None)
        collector.add(self.collect)
        if hook:
            router.add_hook(self.observe)

    def watch(self, prefix: str, source: Any, *, gauges: Iterable[str] = DEFAULT_GAUGES) -> None:
        """Export ``source``'s numbers (see ``source_stats``) as ``tierswitch_<prefix>_<key>_total`` counters, or
        ``tierswitch_<prefix>_<key>`` gauges for keys in ``gauges``. Nested mappings become ``<key>_<subkey>``.
        E.g. ``watch("distill", distiller)``, ``watch("distill_feed", feed)``, ``watch("buffer", buffer)``."""
        if not _NAME.fullmatch(f"tierswitch_{prefix}"):
            raise ValueError(f"invalid metric prefix {prefix!r}: use letters, digits, '_' and ':'")
        watched = frozenset(gauges)
        # a source of its own: one that raises costs its own series, not the router's
        collector_for(self.registry).add(lambda: self._watched_families(prefix, source, watched))

    # -- hook -----------------------------------------------------------------------------------------------
    def observe(self, record: DecisionRecord) -> None:
        """The decision hook: latency, cost, and escalations/fallbacks/failures read from the trace."""
        r = self.name
        self.latency.labels(r, record.tier, "true" if record.cached else "false").observe(record.latency_s)
        if record.cost:
            self.cost.labels(r, record.tier).inc(record.cost)
        current: str | None = None
        for step in record.trace:
            kind = step.kind
            if kind in ("call", "probe", "decide"):
                current = step.tier
            elif kind == "failure":
                current = step.tier
                self.failures.labels(r, step.tier or "").inc()
            elif kind == "escalate":
                self.escalations.labels(r, current or "", step.tier or "").inc()
                current = step.tier
            elif kind == "fallback":
                self.fallbacks.labels(r, current or "", step.tier or "").inc()
                current = step.tier

    # -- scrape ---------------------------------------------------------------------------------------------
    def collect(self) -> Iterator[Metric]:
        """Every family of this router, read now (the registry's collector merges them with other routers')."""
        for instrument in (self.latency, self.cost, self.escalations, self.fallbacks, self.failures):
            yield from instrument.collect()
        yield from self._router_families()
        yield from self._cache_families()
        yield from self._tier_families()

    def _watched_families(self, prefix: str, source: Any, gauges: frozenset[str]) -> Iterator[Metric]:
        for key, value in _flatten(source_stats(source)):
            key = _clean(key)
            gauge = any(key == g or key.endswith("_" + g) for g in gauges)
            name = f"tierswitch_{prefix}_{key}" + ("" if gauge else "_total")
            yield _one(name, f"{prefix} {key}.", self.name, value, gauge=gauge)

    def _router_families(self) -> Iterator[Metric]:
        r = self.name
        snap = dict(self.router.stats.snapshot())
        served = snap.pop("served", None)
        requests = _counter("tierswitch_requests_total", "Answered requests, by serving tier.", "router", "tier")
        if isinstance(served, Mapping):
            for tier, n in sorted(served.items()):
                if _number(n):
                    requests.add_metric([r, str(tier)], float(n))
        yield requests
        tiers = set(self.router.tiers)
        for key, value in sorted(snap.items()):
            name, doc = f"tierswitch_router_{_clean(key)}_total", f"Router counter {key!r}."
            if _number(value):
                yield _one(name, doc, r, float(value))
            elif isinstance(value, Mapping):  # per tier (and per reason) counters, however the router nests them
                fam = _nested(name, doc, r, value, tiers)
                if fam is not None:
                    yield fam

    def _cache_families(self) -> Iterator[Metric]:
        cache = self.router.cache
        if cache is None:
            return
        r = self.name
        tiers = sorted(dict(cache.stats.tiers).items())
        for counter in _CACHE_COUNTERS:
            fam = _counter(f"tierswitch_cache_{counter}_total", f"Cache {counter.replace('_', ' ')}, by tier.",
                           "router", "tier")
            for tier, stats in tiers:
                fam.add_metric([r, tier], float(getattr(stats, counter)))
            yield fam
        yield _one("tierswitch_cache_evictions_total", "Entries evicted to keep the cache bounded.", r,
                   float(cache.stats.evictions))
        try:
            entries = len(cache)  # type: ignore[arg-type]
        except TypeError:  # a backend without a cheap len (Redis)
            pass
        else:
            yield _one("tierswitch_cache_entries", "Entries held by an in-process cache.", r, float(entries),
                       gauge=True)
        health = getattr(cache, "health", None)
        if callable(health):
            h = health()
            yield _one("tierswitch_cache_breaker_open", "1 while the cache backend's breaker is open.", r,
                       float(bool(h.get("open"))), gauge=True)
            yield _one("tierswitch_cache_breaker_trips_total", "Times the cache breaker opened.", r,
                       float(h.get("trips", 0)))
            yield _one("tierswitch_cache_breaker_skipped_total", "Cache calls skipped while its breaker was open.", r,
                       float(h.get("skipped", 0)))

    def _tier_families(self) -> list[Metric]:
        from tierswitch.reliability.guarded import Guarded

        r = self.name
        attempts = {c: _counter(f"tierswitch_tier_{c}_total", f"Guarded tier {c.replace('_', ' ')}.", "router", "tier")
                    for c in _GUARD_COUNTERS}
        failures = _counter("tierswitch_tier_failures_total",
                            "Guarded tier failures by kind (errors, timeouts, saturated, circuit_open).",
                            "router", "tier", "kind")
        hung = _gauge("tierswitch_tier_hung_calls", "Timed-out calls still running on the tier's pool.",
                      "router", "tier")
        abandoned = _counter("tierswitch_tier_abandoned_calls_total", "Calls abandoned at their timeout.",
                             "router", "tier")
        state = _gauge("tierswitch_breaker_state", "Circuit breaker state: 0 closed, 1 half-open, 2 open.",
                       "router", "tier")
        opened = _counter("tierswitch_breaker_opened_total", "Times the tier's breaker opened.", "router", "tier")
        refused = _counter("tierswitch_breaker_refused_total", "Calls refused by an open breaker.", "router", "tier")
        for tier_name, tier in self.router.tiers.items():
            if not isinstance(tier, Guarded):
                continue
            snap = tier.snapshot()
            for c, fam in attempts.items():
                fam.add_metric([r, tier_name], float(snap.get(c, 0)))
            for kind in _FAILURE_KINDS:
                failures.add_metric([r, tier_name, kind], float(snap.get(kind, 0)))
            hung.add_metric([r, tier_name], float(snap["pool"]["hung"]))
            abandoned.add_metric([r, tier_name], float(snap["pool"]["abandoned"]))
            if snap["breaker"] is not None:
                state.add_metric([r, tier_name], float(snap["breaker"]["state_code"]))
                opened.add_metric([r, tier_name], float(snap["breaker"]["opened"]))
                refused.add_metric([r, tier_name], float(snap["breaker"]["refused"]))
        return [*attempts.values(), failures, hung, abandoned, state, opened, refused]


def _one(name: str, doc: str, router: str, value: float, *, gauge: bool = False) -> Metric:
    fam = _gauge(name, doc, "router") if gauge else _counter(name, doc, "router")
    fam.add_metric([router], value)
    return fam


def _nested(name: str, doc: str, router: str, value: Mapping[Any, Any], tiers: set[str]) -> Metric | None:
    """A counter family from ``{tier: n}`` or ``{tier: {reason: n}}`` (``key`` instead of ``tier`` when the keys are
    not tier names); ``None`` when the mapping holds no numbers at those depths."""
    rows: list[tuple[str, str | None, float]] = []
    for k, v in sorted(value.items(), key=lambda kv: str(kv[0])):
        if _number(v):
            rows.append((str(k), None, float(v)))
        elif isinstance(v, Mapping):
            rows.extend((str(k), str(k2), float(v2)) for k2, v2 in sorted(v.items(), key=lambda kv: str(kv[0]))
                        if _number(v2))
    if not rows:
        return None
    first = "tier" if all(k in tiers for k, _, _ in rows) else "key"
    if any(reason is not None for _, reason, _ in rows):
        fam = _counter(name, doc, "router", first, "reason")
        for k, reason, n in rows:
            fam.add_metric([router, k, reason or ""], n)
    else:
        fam = _counter(name, doc, "router", first)
        for k, _, n in rows:
            fam.add_metric([router, k], n)
    return fam


def registry_for(router: MetricsSource, *, name: str = "default", hook: bool = True,
                 watch: Mapping[str, Any] | None = None,
                 registry: CollectorRegistry | None = None) -> CollectorRegistry:
    """A registry holding ``router``'s metrics (a new ``Registry`` unless one is given), plus each ``watch`` item as
    ``RouterMetrics.watch(prefix, source)``. Serve it with ``serve_metrics(port, registry=...)``, mount it in an ASGI
    app with ``prometheus_client.make_asgi_app(registry)``, or answer a route with ``exposition(registry, accept)``."""
    reg = registry if registry is not None else Registry()
    metrics = RouterMetrics(router, reg, name=name, hook=hook)
    for prefix, source in (watch or {}).items():
        metrics.watch(prefix, source)
    return reg
