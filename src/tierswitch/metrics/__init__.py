"""Prometheus metrics on ``prometheus_client``: router/cache/tier/distillation collectors read at scrape time, and
``/metrics`` served by ``prometheus_client``'s own HTTP exposition (or mounted in any ASGI/WSGI app).

::

    from tierswitch.metrics import RouterMetrics, registry_for, serve_metrics

    registry = registry_for(router, name="api")      # a CollectorRegistry with the router's metrics
    server = serve_metrics(9464, registry=registry)  # only when asked; 127.0.0.1 by default
    print(registry.render())                         # or prometheus_client.generate_latest(registry)

    metrics = RouterMetrics(router)                  # the same into tierswitch's process-wide default_registry()
    metrics.watch("distill", distiller)              # any object with stats()/counters/snapshot()
"""

from tierswitch.metrics.registry import (
    DEFAULT_BUCKETS,
    Registry,
    Source,
    TierswitchCollector,
    add_source,
    collector_for,
    default_registry,
    exposition,
)
from tierswitch.metrics.router import MetricsSource, RouterMetrics, registry_for, source_stats
from tierswitch.metrics.server import CONTENT_TYPE, MetricsServer, serve_metrics

__all__ = [
    "CONTENT_TYPE",
    "DEFAULT_BUCKETS",
    "MetricsServer",
    "MetricsSource",
    "Registry",
    "RouterMetrics",
    "Source",
    "TierswitchCollector",
    "add_source",
    "collector_for",
    "default_registry",
    "exposition",
    "registry_for",
    "serve_metrics",
    "source_stats",
]
