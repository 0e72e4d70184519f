"""Prometheus-format metrics: a small registry, router/cache/tier/distillation collectors and a ``/metrics`` server.

::

    from tierswitch.metrics import RouterMetrics, serve_metrics

    metrics = RouterMetrics(router)                  # adds a decision hook; reads router/cache/tier stats at scrape
    metrics.watch("distill", distiller)              # any object with stats()/counters/snapshot()
    server = serve_metrics(9464)                     # only when asked; 127.0.0.1 by default
    print(metrics.registry.render())                 # or render the text yourself
"""

from tierswitch.metrics.registry import (
    DEFAULT_BUCKETS,
    Counter,
    Family,
    Gauge,
    Histogram,
    Registry,
    Sample,
    default_registry,
)
from tierswitch.metrics.router import RouterMetrics, source_stats
from tierswitch.metrics.server import CONTENT_TYPE, MetricsServer, serve_metrics

__all__ = [
    "CONTENT_TYPE",
    "DEFAULT_BUCKETS",
    "Counter",
    "Family",
    "Gauge",
    "Histogram",
    "MetricsServer",
    "Registry",
    "RouterMetrics",
    "Sample",
    "default_registry",
    "serve_metrics",
    "source_stats",
]
