"""Metrics on prometheus_client: router/cache/tier/distillation collectors, scraped over real HTTP and parsed with
prometheus_client's own text parser."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from prometheus_client import Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from tierswitch import CallableTier, Cascade, Fixed, MemoryCache, Router
from tierswitch.distill.buffer import MemoryBuffer
from tierswitch.distill.sample import Sample
from tierswitch.errors import ConfigError
from tierswitch.metrics import (
    CONTENT_TYPE,
    Registry,
    RouterMetrics,
    add_source,
    exposition,
    registry_for,
    serve_metrics,
)
from tierswitch.reliability import CircuitBreaker, Guarded

Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> tuple[Series, dict[str, str]]:
    """Samples by (name, labels) and family types, through prometheus_client's parser; a family or a series that
    appears twice fails the test (the merge across routers must hold)."""
    samples: Series = {}
    types: dict[str, str] = {}
    for fam in text_string_to_metric_families(text):
        assert fam.name not in types, f"family {fam.name} exposed twice"
        types[fam.name] = fam.type
        for s in fam.samples:
            key = (s.name, frozenset(s.labels.items()))
            assert key not in samples, f"duplicate series {key}"
            samples[key] = s.value
    return samples, types


def value(samples: Series, name: str, **labels: object) -> float:
    return samples[(name, frozenset((k, str(v)) for k, v in labels.items()))]


def scrape(url: str) -> str:
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"] == CONTENT_TYPE
    return response.text


def test_registry_is_a_collector_registry_that_merges_sources_and_counts_failing_ones():
    reg = Registry()
    assert isinstance(reg, CollectorRegistry)
    jobs = Counter("jobs_total", "Jobs done.", ("queue",), registry=reg)  # prometheus_client's own instruments
    jobs.labels(queue='we"ird\\name\n').inc()
    jobs.labels(queue="b").inc(2)

    def broken() -> list[Any]:
        raise RuntimeError("bug")

    add_source(reg, broken)
    add_source(reg, lambda: [GaugeMetricFamily("extra", "x", labels=["a"])])
    fam = GaugeMetricFamily("extra", "x", labels=["a"])
    fam.add_metric(["2"], 7)
    add_source(reg, lambda: [fam])  # same family from a second source: merged into one
    samples, types = parse(reg.render())
    assert value(samples, "jobs_total", queue="b") == 2
    assert value(samples, "jobs_total", queue='we"ird\\name\n') == 1  # escaped and parsed back
    assert value(samples, "extra", a="2") == 7 and types["extra"] == "gauge"
    assert value(samples, "tierswitch_metrics_collector_errors_total") == 1
    assert ("jobs_created", frozenset({("queue", "b")})) in samples  # a prometheus_client counter's own series ...
    assert not any(name.startswith("tierswitch") and name.endswith("_created") for name, _ in samples)  # not ours
    body, content_type = exposition(reg, "application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text") and body.endswith(b"# EOF\n")
    assert exposition(reg)[1] == CONTENT_TYPE


def build_router() -> Router:
    def base_fn(x: str) -> tuple[str, np.ndarray]:
        if x.startswith("fail"):
            raise RuntimeError("base broke")
        return ("B", np.array([0.9, 0.1]) if x.startswith("easy") else np.array([0.55, 0.45]))

    base = Guarded(CallableTier("base", base_fn, cost=1.0), breaker=CircuitBreaker(100, 60, 10))
    full = Guarded(CallableTier("full", lambda x: ("F", np.array([0.0, 1.0])), cost=10.0), timeout_s=5.0)
    return Router([base, full], Cascade({"base": 0.8}), cache=MemoryCache(max_entries=4))


def test_router_metrics_follow_routed_traffic_over_http():
    router = build_router()
    buffer = MemoryBuffer(capacity=2)
    buffer.put_many(Sample(teacher=np.array([0.2, 0.8]), label=1, x=np.zeros(3)) for _ in range(5))
    reg = registry_for(router, name="api", watch={"buffer": buffer})
    other = Router([CallableTier("base", str.upper)], Fixed("base"), cache=None)
    RouterMetrics(other, reg, name="other")  # a second router in the same registry: same families, own label
    with serve_metrics(0, registry=reg) as server:
        assert server.host == "127.0.0.1"
        before, _ = parse(scrape(server.url))
        assert not any(name == "tierswitch_requests_total" for name, _ in before)  # nothing routed yet
        inputs = ["easy 1", "easy 2", "hard 1", "fail 1", "easy 1", "easy 1", "hard 2"]
        served = [router(x) for x in inputs]
        other("q")
        samples, types = parse(scrape(server.url))
        only = httpx.get(server.url, params={"name[]": "tierswitch_requests_total"}, timeout=10).text
        assert {fam.name for fam in text_string_to_metric_families(only)} == {"tierswitch_requests"}
    stats = router.stats.snapshot()
    by_tier = {t: sum(1 for r in served if r.tier == t) for t in ("base", "full")}
    assert value(samples, "tierswitch_requests_total", router="api", tier="base") == by_tier["base"] == 4
    assert value(samples, "tierswitch_requests_total", router="api", tier="full") == by_tier["full"] == 3
    assert value(samples, "tierswitch_requests_total", router="other", tier="base") == 1
    assert value(samples, "tierswitch_router_requests_total", router="api") == stats["requests"] == 7
    assert value(samples, "tierswitch_router_escalations_total", router="api") == stats["escalations"] == 2
    assert value(samples, "tierswitch_router_fallbacks_total", router="api") == stats["fallbacks"] == 1
    assert value(samples, "tierswitch_router_failures_total", router="api") == stats["failures"] == 1
    assert value(samples, "tierswitch_escalations_by_tier_total", router="api", from_tier="base", to_tier="full") == 2
    assert value(samples, "tierswitch_fallbacks_by_tier_total", router="api", from_tier="base", to_tier="full") == 1
    assert value(samples, "tierswitch_failures_by_tier_total", router="api", tier="base") == 1
    cache = router.cache
    assert cache is not None
    for tier in ("base", "full"):
        assert value(samples, "tierswitch_cache_hits_total", router="api", tier=tier) == cache.stats.tiers[tier].hits
        assert value(samples, "tierswitch_cache_misses_total", router="api", tier=tier) == \
            cache.stats.tiers[tier].misses
        assert value(samples, "tierswitch_cache_errors_total", router="api", tier=tier) == 0
    assert sum(value(samples, "tierswitch_cache_hits_total", router="api", tier=t) for t in ("base", "full")) == 2
    assert value(samples, "tierswitch_cache_evictions_total", router="api") == cache.stats.evictions == 1
    assert value(samples, "tierswitch_cache_entries", router="api") == 4
    assert value(samples, "tierswitch_tier_failures_total", router="api", tier="base", kind="errors") == 1
    assert value(samples, "tierswitch_tier_attempts_total", router="api", tier="base") == 5
    assert value(samples, "tierswitch_breaker_state", router="api", tier="base") == 0
    assert value(samples, "tierswitch_request_latency_seconds_count", router="api", tier="base", cached="true") == 2
    assert value(samples, "tierswitch_request_latency_seconds_bucket", router="api", tier="base", cached="true",
                 le="+Inf") == 2
    assert types["tierswitch_request_latency_seconds"] == "histogram"
    # two escalations pay for both tiers (1 + 10); the fallback after base failed pays for full only
    assert value(samples, "tierswitch_request_cost_total", router="api", tier="full") == 11 + 10 + 11
    assert value(samples, "tierswitch_buffer_dropped_total", router="api") == buffer.dropped == 3
    assert value(samples, "tierswitch_buffer_fresh", router="api") == 2
    assert types["tierswitch_buffer_fresh"] == "gauge" and types["tierswitch_buffer_added"] == "counter"
    assert value(samples, "tierswitch_metrics_collector_errors_total") == 0
    with pytest.raises(ValueError, match="already exports"):
        RouterMetrics(router, reg, name="api")


class NestedStats:
    """The router's real counters, plus counters nested per tier and reason as the router may grow them."""

    def __init__(self, stats: Any) -> None:  # the router's own stats object, whatever its class
        self.stats = stats

    def snapshot(self) -> dict[str, Any]:
        snap = self.stats.snapshot()
        snap["fallbacks_by"] = {"base": {"errors": snap.get("fallbacks", 0)}}
        snap["cache_errors"] = 0
        snap["odd"] = {"x-y": 2, "note": "text is skipped"}
        return snap


class RouterView:
    """What RouterMetrics reads of a router (stats, tiers, cache), over a real router, with nested stats."""

    def __init__(self, router: Router) -> None:
        self.stats = NestedStats(router.stats)
        self.tiers = router.tiers
        self.cache = router.cache
        self.add_hook = router.add_hook


def test_breaker_state_and_nested_router_counters_show_in_the_metrics():
    clock = [0.0]
    base = Guarded(CallableTier("base", lambda x: 1 / 0), breaker=CircuitBreaker(2, 60, 10, clock=lambda: clock[0]))
    router = Router([base, CallableTier("full", str)], Fixed("base"), cache=None)
    metrics = RouterMetrics(RouterView(router), Registry(), hook=False)
    for i in range(5):
        router(f"q{i}")
    samples, _ = parse(metrics.registry.render())  # type: ignore[attr-defined]
    assert value(samples, "tierswitch_breaker_state", router="default", tier="base") == 2
    assert value(samples, "tierswitch_breaker_opened_total", router="default", tier="base") == 1
    assert value(samples, "tierswitch_tier_failures_total", router="default", tier="base", kind="circuit_open") == 3
    assert value(samples, "tierswitch_router_fallbacks_total", router="default") == 5
    assert value(samples, "tierswitch_router_fallbacks_by_total", router="default", tier="base", reason="errors") == 5
    assert value(samples, "tierswitch_router_cache_errors_total", router="default") == 0
    assert value(samples, "tierswitch_router_odd_total", router="default", key="x-y") == 2
    assert not any(name.startswith("tierswitch_request_latency") for name, _ in samples)  # no hook


def free_socket() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


@pytest.fixture
def starlette_metrics() -> Iterator[tuple[str, Router]]:
    """The gateway's way: a Starlette route answering from the same registry, under a real uvicorn server."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    router = build_router()
    registry = registry_for(router, name="gw")

    async def metrics(request: Request) -> Response:
        body, content_type = exposition(registry, request.headers.get("accept"))
        return Response(body, media_type=content_type)

    app = Starlette(routes=[Route("/metrics", metrics)])
    sock = free_socket()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)
    thread.start()
    try:
        for _ in range(500):  # wait for startup on the server's own flag, not on a sleep
            if server.started:
                break
            thread.join(0.01)
        assert server.started
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/metrics", router
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def test_the_same_registry_mounted_in_a_starlette_app(starlette_metrics):
    url, router = starlette_metrics
    for x in ("easy 1", "hard 1", "easy 1"):
        router(x)
    samples, _ = parse(scrape(url))
    assert value(samples, "tierswitch_requests_total", router="gw", tier="base") == 2
    assert value(samples, "tierswitch_requests_total", router="gw", tier="full") == 1
    response = httpx.get(url, headers={"accept": "application/openmetrics-text; version=1.0.0"}, timeout=10)
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert 'tierswitch_requests_total{router="gw",tier="full"} 1.0' in response.text


def test_server_stops_on_close_and_nothing_listens_or_loads_at_import():
    server = serve_metrics(0, registry=Registry())
    url = server.url
    scrape(url)
    with pytest.raises(ConfigError, match="choose a free port") as info:  # the port is taken: say what to do
        serve_metrics(server.port, registry=Registry())
    assert info.value.field == "metrics.port"
    server.close()
    with pytest.raises(httpx.ConnectError):
        httpx.get(url, timeout=2)
    script = (
        "import sys, threading\n"
        "import tierswitch, tierswitch.metrics, tierswitch.reliability\n"
        "from tierswitch.metrics import Registry\n"
        "Registry()\n"
        "print(threading.active_count(), 'torch' in sys.modules, 'redis' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1", "False", "False"]
