"""The gateway's Prometheus metrics (``prometheus_client``, one registry per process) and JSON access logs.

Metrics: ``tierswitch_gateway_requests_total{endpoint,status,route,tier,cached}``,
``tierswitch_gateway_request_seconds{endpoint}`` (histogram), ``tierswitch_gateway_cost_total{route,tier}``,
``tierswitch_gateway_inflight``, ``tierswitch_gateway_config_reloads_total`` and
``tierswitch_gateway_config_error`` (1 while the last reload failed and the previous config serves). Route labels
take only configured route names, so clients cannot grow the label space.

Access log: one JSON object per request on the ``tierswitch.serve`` logger (INFO): request id, method, path,
status, latency, key name (never the key), model/route, tier, cached, cost, tokens, score, the policy's reason,
and the error code when there was one.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = ["GatewayMetrics", "access_log", "log"]

log = logging.getLogger("tierswitch.serve")

_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class _ReloadCollector(Collector):
    def __init__(self, state: Callable[[], tuple[int, bool]]) -> None:
        self.state = state

    def collect(self) -> Iterator[Any]:
        reloads, failed = self.state()
        yield CounterMetricFamily("tierswitch_gateway_config_reloads", "configs loaded", value=reloads)
        yield GaugeMetricFamily("tierswitch_gateway_config_error", "1 while the last reload failed", value=int(failed))


class GatewayMetrics:
    """The gateway's instruments in their own registry; ``render()`` is the ``/metrics`` body."""

    def __init__(self, reload_state: Callable[[], tuple[int, bool]]) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # no *_created series: they double the exposition for nothing we use
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("tierswitch_gateway_requests", "requests answered",
                                ["endpoint", "status", "route", "tier", "cached"], registry=self.registry)
        self.seconds = Histogram("tierswitch_gateway_request_seconds", "time to answer (streams: to the last byte)",
                                 ["endpoint"], buckets=_BUCKETS, registry=self.registry)
        self.cost = Counter("tierswitch_gateway_cost", "routed cost served", ["route", "tier"],
                            registry=self.registry)
        self.inflight = Gauge("tierswitch_gateway_inflight", "requests being answered", registry=self.registry)
        self.registry.register(_ReloadCollector(reload_state))

    def register(self, collector: Collector) -> None:
        self.registry.register(collector)

    def observe(self, endpoint: str, status: int, route: str, tier: str, cached: bool, cost: float,
                elapsed_s: float) -> None:
        self.requests.labels(endpoint, str(status), route, tier, "true" if cached else "false").inc()
        self.seconds.labels(endpoint).observe(elapsed_s)
        if cost > 0:
            self.cost.labels(route, tier).inc(cost)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def access_log(record: dict[str, Any]) -> None:
    """One JSON line on ``tierswitch.serve`` (skipped at no cost when INFO is off)."""
    if log.isEnabledFor(logging.INFO):
        record["ts"] = round(time.time(), 3)
        log.info(json.dumps(record, separators=(",", ":"), default=str))


LOG_ENV = "TIERSWITCH_SERVE_ACCESS_LOG"


def setup_logging(access_log: bool = True) -> None:
    """JSON lines of ``tierswitch.serve`` to stderr (INFO: access log; WARNING only without it)."""
    logger = logging.getLogger("tierswitch.serve")
    if not any(isinstance(h, logging.StreamHandler) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO if access_log else logging.WARNING)
    logger.propagate = False
