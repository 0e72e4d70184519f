"""Metrics: the Prometheus text format, router/cache/tier/distillation collectors, and /metrics over real HTTP."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest

from tierswitch import CallableTier, Cascade, Fixed, MemoryCache, Router
from tierswitch.distill.buffer import MemoryBuffer
from tierswitch.distill.sample import Sample
from tierswitch.errors import ConfigError
from tierswitch.metrics import CONTENT_TYPE, Family, Registry, RouterMetrics, serve_metrics
from tierswitch.reliability import CircuitBreaker, Guarded

_LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
_PAIR = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(text: str) -> tuple[dict[tuple[str, frozenset], float], dict[str, str]]:
    """A strict little parser of the text format: every line is a comment, or name{labels} value."""
    samples: dict[tuple[str, frozenset], float] = {}
    types: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert name not in types, f"family {name} declared twice"
            types[name] = kind
            continue
        if line.startswith("# HELP "):
            continue
        m = _LINE.match(line)
        assert m, f"malformed line {line!r}"
        labels = frozenset(_PAIR.findall(m.group(2) or ""))
        key = (m.group(1), labels)
        assert key not in samples, f"duplicate series {key}"
        samples[key] = float(m.group(3))
    return samples, types


def value(samples, name, **labels) -> float:
    return samples[(name, frozenset((k, str(v)) for k, v in labels.items()))]


def test_registry_renders_counters_gauges_and_cumulative_histograms():
    reg = Registry()
    c = reg.counter("jobs_total", "Jobs done.", ("queue",))
    c.inc(queue='we"ird\\name\n')
    c.inc(2, queue="b")
    g = reg.gauge("depth", "Queue depth.")
    g.set(5)
    g.inc(-2)
    h = reg.histogram("latency_seconds", "Latency.", ("op",), buckets=(0.1, 1.0))
    for v in (0.05, 0.1, 0.5, 3.0):
        h.observe(v, op="get")
    samples, types = parse(reg.render())
    assert types == {"jobs_total": "counter", "depth": "gauge", "latency_seconds": "histogram",
                     "tierswitch_metrics_collector_errors_total": "counter"}
    assert value(samples, "jobs_total", queue="b") == 2
    assert value(samples, "jobs_total", queue='we\\"ird\\\\name\\n') == 1  # escaped per the format
    assert value(samples, "depth") == 3
    assert [value(samples, "latency_seconds_bucket", op="get", le=le) for le in ("0.1", "1", "+Inf")] == [2, 3, 4]
    assert value(samples, "latency_seconds_count", op="get") == 4
    assert value(samples, "latency_seconds_sum", op="get") == pytest.approx(3.65)
    assert reg.counter("jobs_total", "Jobs done.", ("queue",)) is c  # same instrument on re-registration
    with pytest.raises(ValueError, match="decrease"):
        c.inc(-1, queue="b")
    with pytest.raises(ValueError, match="takes labels"):
        c.inc(queue="b", extra="x")
    with pytest.raises(ValueError, match="invalid metric name"):
        reg.counter("9lives", "")
    with pytest.raises(ValueError, match="another type"):
        reg.gauge("jobs_total", "", ("queue",))


def test_a_failing_collector_is_counted_and_the_scrape_goes_on():
    reg = Registry()
    reg.counter("ok_total", "fine").inc()

    def broken():
        raise RuntimeError("bug")

    reg.add_collector(broken)
    reg.add_collector(lambda: [Family("extra", "gauge", "x").add(7)])
    samples, _ = parse(reg.render())
    assert value(samples, "ok_total") == 1 and value(samples, "extra") == 7
    assert value(samples, "tierswitch_metrics_collector_errors_total") == 1


def build_router(clock_release: threading.Event):
    calls = {"base": 0}

    def base_fn(x):
        calls["base"] += 1
        if x.startswith("fail"):
            raise RuntimeError("base broke")
        return ("B", np.array([0.9, 0.1]) if x.startswith("easy") else np.array([0.55, 0.45]))

    base = Guarded(CallableTier("base", base_fn, cost=1.0), breaker=CircuitBreaker(100, 60, 10))
    full = Guarded(CallableTier("full", lambda x: ("F", np.array([0.0, 1.0])), cost=10.0), timeout_s=5.0)
    router = Router([base, full], Cascade({"base": 0.8}), cache=MemoryCache(max_entries=4))
    return router, calls


def test_router_metrics_match_router_cache_and_tier_counters_over_http():
    router, _ = build_router(threading.Event())
    reg = Registry()
    metrics = RouterMetrics(router, reg, name="api")
    buffer = MemoryBuffer(capacity=2)
    buffer.put_many(Sample(teacher=np.array([0.2, 0.8]), label=1, x=np.zeros(3)) for _ in range(5))
    metrics.watch("buffer", buffer)
    inputs = ["easy 1", "easy 2", "hard 1", "fail 1", "easy 1", "easy 1", "hard 2"]
    served = [router(x) for x in inputs]
    with serve_metrics(0, registry=reg) as server:
        assert server.host == "127.0.0.1"
        with urllib.request.urlopen(server.url, timeout=10) as response:
            assert response.headers["Content-Type"] == CONTENT_TYPE
            text = response.read().decode()
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(server.url.replace("/metrics", "/other"), timeout=10)
        assert missing.value.code == 404
    samples, types = parse(text)
    stats = router.stats.snapshot()
    by_tier = {t: sum(1 for r in served if r.tier == t) for t in ("base", "full")}
    assert value(samples, "tierswitch_requests_total", router="api", tier="base") == by_tier["base"] == 4
    assert value(samples, "tierswitch_requests_total", router="api", tier="full") == by_tier["full"] == 3
    assert value(samples, "tierswitch_router_escalations_total", router="api") == stats["escalations"] == 2
    assert value(samples, "tierswitch_router_fallbacks_total", router="api") == stats["fallbacks"] == 1
    assert value(samples, "tierswitch_escalations_by_tier_total", router="api", from_tier="base", to_tier="full") == 2
    assert value(samples, "tierswitch_fallbacks_by_tier_total", router="api", from_tier="base", to_tier="full") == 1
    cache = router.cache.stats
    for tier in ("base", "full"):
        assert value(samples, "tierswitch_cache_hits_total", router="api", tier=tier) == cache.tiers[tier].hits
        assert value(samples, "tierswitch_cache_misses_total", router="api", tier=tier) == cache.tiers[tier].misses
    assert sum(value(samples, "tierswitch_cache_hits_total", router="api", tier=t) for t in ("base", "full")) == 2
    assert value(samples, "tierswitch_cache_evictions_total", router="api") == cache.evictions == 1
    assert value(samples, "tierswitch_cache_entries", router="api") == 4
    assert value(samples, "tierswitch_tier_failures_total", router="api", tier="base", kind="errors") == 1
    assert value(samples, "tierswitch_tier_attempts_total", router="api", tier="base") == 5
    assert value(samples, "tierswitch_breaker_state", router="api", tier="base") == 0
    assert value(samples, "tierswitch_request_latency_seconds_count", router="api", tier="base", cached="true") == 2
    # two escalations pay for both tiers (1 + 10); the fallback after base failed pays for full only
    assert value(samples, "tierswitch_request_cost_total", router="api", tier="full") == 11 + 10 + 11
    assert value(samples, "tierswitch_buffer_dropped_total", router="api") == buffer.dropped == 3
    assert value(samples, "tierswitch_buffer_fresh", router="api") == 2
    assert types["tierswitch_buffer_fresh"] == "gauge" and types["tierswitch_buffer_added_total"] == "counter"
    with pytest.raises(ValueError, match="already exports"):
        RouterMetrics(router, reg, name="api")


def test_breaker_state_shows_open_in_the_metrics():
    clock = [0.0]
    base = Guarded(CallableTier("base", lambda x: 1 / 0), breaker=CircuitBreaker(2, 60, 10, clock=lambda: clock[0]))
    router = Router([base, CallableTier("full", str)], Fixed("base"), cache=None)
    metrics = RouterMetrics(router, Registry(), hook=False)
    for i in range(5):
        router(f"q{i}")
    samples, _ = parse(metrics.registry.render())
    assert value(samples, "tierswitch_breaker_state", router="default", tier="base") == 2
    assert value(samples, "tierswitch_breaker_opened_total", router="default", tier="base") == 1
    assert value(samples, "tierswitch_tier_failures_total", router="default", tier="base", kind="circuit_open") == 3
    assert ("tierswitch_request_latency_seconds_count", frozenset({("router", "default"), ("tier", "full"),
                                                                   ("cached", "false")})) not in samples  # no hook


def test_server_stops_on_close_and_nothing_listens_or_loads_at_import():
    server = serve_metrics(0, registry=Registry())
    url = server.url
    urllib.request.urlopen(url, timeout=10).read()
    with pytest.raises(ConfigError, match="choose a free port") as info:  # the port is taken: say what to do
        serve_metrics(server.port, registry=Registry())
    assert info.value.field == "metrics.port"
    server.close()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url, timeout=2)
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
