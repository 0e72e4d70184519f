"""Registries on ``prometheus_client``: a ``CollectorRegistry`` with ``render()``, and one merging collector per
registry that every tierswitch exporter feeds.

Exporters (``RouterMetrics``, anything added with ``add_source``) hand in *sources*: callables that return
``prometheus_client`` metric families read at scrape time. The registry's one ``TierswitchCollector`` merges the
families of the same name (two routers in one registry share ``tierswitch_requests_total``, told apart by their
``router`` label), drops ``_created`` samples (the old exposition had none and dashboards do not use them), and
counts sources that raise in ``tierswitch_metrics_collector_errors_total``: a metrics bug never breaks the scrape.
Nothing here touches ``prometheus_client.REGISTRY``; pass it explicitly if that is where you want the series.
"""

from __future__ import annotations

import inspect
import logging
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, choose_encoder, generate_latest
from prometheus_client.registry import CollectorRegistry

__all__ = ["DEFAULT_BUCKETS", "Registry", "Source", "TierswitchCollector", "add_source", "collector_for",
           "default_registry", "exposition"]

log = logging.getLogger("tierswitch.metrics")

DEFAULT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_CREATED_TYPES = frozenset({"counter", "histogram", "summary"})

Source = Callable[[], Iterable[Metric]]
_NAMELESS_OK = "support_collectors_without_names" in inspect.signature(CollectorRegistry.__init__).parameters


class Registry(CollectorRegistry):
    """A ``prometheus_client.CollectorRegistry`` that can also ``render()`` its text exposition. Its series can be
    filtered by name (``?name[]=`` on ``serve_metrics``, ``restricted_registry``) where ``prometheus_client`` supports
    that for collectors whose names are known only at scrape time, as ours are."""

    def __init__(self, **kwargs: Any) -> None:
        if _NAMELESS_OK:
            kwargs.setdefault("support_collectors_without_names", True)
        super().__init__(**kwargs)

    def render(self) -> str:
        """The Prometheus text exposition (format 0.0.4) of every metric, as ``generate_latest`` writes it."""
        return generate_latest(self).decode("utf-8")


class TierswitchCollector:
    """The collector a registry's tierswitch sources share (see the module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sources: list[Source] = []
        self._owners: set[str] = set()
        self.errors = 0

    def claim(self, owner: str) -> None:
        """Reserve a label value (e.g. a router's name) so two exporters never emit the same series."""
        with self._lock:
            if owner in self._owners:
                raise ValueError(f"{owner!r} already exports into this registry; give each router its own name=")
            self._owners.add(owner)

    def add(self, source: Source) -> None:
        with self._lock:
            self._sources.append(source)

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            sources = list(self._sources)
        merged: dict[str, Metric] = {}
        for source in sources:
            try:
                families = list(source())
            except Exception:  # a metrics bug must never break the scrape (nor the service)
                with self._lock:  # concurrent scrapes (the server is threaded) must not lose a count
                    self.errors += 1
                log.exception("metrics source %r failed", source)
                continue
            for fam in families:
                created = fam.name + "_created" if fam.type in _CREATED_TYPES else None
                samples = [s for s in fam.samples if s.name != created]
                known = merged.get(fam.name)
                if known is None:
                    known = merged[fam.name] = Metric(fam.name, fam.documentation, fam.type, fam.unit)
                known.samples.extend(samples)
        yield from merged.values()
        yield CounterMetricFamily("tierswitch_metrics_collector_errors",
                                  "Metrics collectors that raised during a scrape.", value=self.errors)


_COLLECTORS: weakref.WeakKeyDictionary[CollectorRegistry, TierswitchCollector] = weakref.WeakKeyDictionary()
_COLLECTORS_LOCK = threading.Lock()


def collector_for(registry: CollectorRegistry) -> TierswitchCollector:
    """The ``TierswitchCollector`` of ``registry``, registered in it on first use."""
    with _COLLECTORS_LOCK:
        collector = _COLLECTORS.get(registry)
        if collector is None:
            collector = _COLLECTORS[registry] = TierswitchCollector()
            registry.register(collector)
        return collector


def add_source(registry: CollectorRegistry, source: Source) -> None:
    """Call ``source()`` at every scrape of ``registry``; it returns metric families (``GaugeMetricFamily`` ...)."""
    collector_for(registry).add(source)


def exposition(registry: CollectorRegistry, accept: str | None = None) -> tuple[bytes, str]:
    """``(body, content_type)`` of a scrape of ``registry``: OpenMetrics when ``accept`` asks for it, else the
    Prometheus text format. For a web framework's own ``/metrics`` route (see ``registry_for``)."""
    if not accept:
        return generate_latest(registry), CONTENT_TYPE_PLAIN_0_0_4
    encoder, content_type = choose_encoder(accept)
    return encoder(registry), content_type


_DEFAULT: Registry | None = None
_DEFAULT_LOCK = threading.Lock()


def default_registry() -> Registry:
    """tierswitch's process-wide registry used when none is given (created on first use; it is not
    ``prometheus_client.REGISTRY``)."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None:
            _DEFAULT = Registry()
        return _DEFAULT
