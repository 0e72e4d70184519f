"""A small metrics registry that renders the Prometheus text exposition format (version 0.0.4).

Three instrument kinds (``Counter``, ``Gauge``, ``Histogram``) updated by the code that owns them, plus *collectors*:
callables that read counters kept elsewhere (router, cache, tier stats) at scrape time and return ``Family`` objects,
so the hot path pays nothing for metrics it does not own. No dependency on ``prometheus_client``.
"""

from __future__ import annotations

import bisect
import logging
import math
import re
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

__all__ = ["DEFAULT_BUCKETS", "Counter", "Family", "Gauge", "Histogram", "Registry", "Sample", "default_registry"]

log = logging.getLogger("tierswitch.metrics")

DEFAULT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


@dataclass(frozen=True, slots=True)
class Sample:
    """One exposition line: ``name{labels} value``."""

    name: str
    labels: Mapping[str, str]
    value: float


@dataclass(slots=True)
class Family:
    """A metric family: its name, type (counter, gauge, histogram, untyped), help text and samples."""

    name: str
    kind: str
    help: str
    samples: list[Sample] = field(default_factory=list)

    def add(self, value: float, suffix: str = "", **labels: object) -> Family:
        self.samples.append(Sample(self.name + suffix, {k: str(v) for k, v in labels.items()}, float(value)))
        return self


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise ValueError(f"invalid metric name {name!r}: use letters, digits, '_' and ':' and no leading digit")
    return name


class _Instrument:
    kind = "untyped"

    def __init__(self, name: str, help: str, labelnames: Sequence[str] = ()) -> None:
        self.name = check_name(name)
        self.help = help
        for label in labelnames:
            if not _LABEL.fullmatch(label) or label.startswith("__") or label == "le":
                raise ValueError(f"invalid label name {label!r} for metric {name!r}")
        self.labelnames = tuple(labelnames)
        self._lock = threading.Lock()

    def _key(self, labels: Mapping[str, object]) -> tuple[str, ...]:
        if set(labels) != set(self.labelnames):
            raise ValueError(f"metric {self.name!r} takes labels {list(self.labelnames)}, got {sorted(labels)}")
        return tuple(str(labels[n]) for n in self.labelnames)

    def collect(self) -> Family:
        raise NotImplementedError


class Counter(_Instrument):
    """A monotonically increasing count. By Prometheus convention its name ends in ``_total``."""

    kind = "counter"

    def __init__(self, name: str, help: str, labelnames: Sequence[str] = ()) -> None:
        super().__init__(name, help, labelnames)
        self._values: dict[tuple[str, ...], float] = {}

    def inc(self, amount: float = 1.0, **labels: object) -> None:
        if amount < 0:
            raise ValueError(f"counter {self.name!r} cannot decrease (inc by {amount})")
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: object) -> float:
        with self._lock:
            return self._values.get(self._key(labels), 0.0)

    def collect(self) -> Family:
        fam = Family(self.name, self.kind, self.help)
        with self._lock:
            for key, value in self._values.items():
                fam.add(value, **dict(zip(self.labelnames, key)))
        return fam


class Gauge(Counter):
    """A value that goes up and down."""

    kind = "gauge"

    def set(self, value: float, **labels: object) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = float(value)

    def inc(self, amount: float = 1.0, **labels: object) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount


class Histogram(_Instrument):
    """Observations counted into cumulative ``le`` buckets, with their ``_sum`` and ``_count``."""

    kind = "histogram"

    def __init__(self, name: str, help: str, labelnames: Sequence[str] = (),
                 buckets: Sequence[float] = DEFAULT_BUCKETS) -> None:
        super().__init__(name, help, labelnames)
        bounds = sorted(float(b) for b in buckets if not math.isinf(b))
        if not bounds or len(set(bounds)) != len(bounds):
            raise ValueError(f"histogram {name!r} needs distinct finite bucket bounds, got {list(buckets)}")
        self.bounds = tuple(bounds)
        self._series: dict[tuple[str, ...], list[float]] = {}  # per-bucket counts (+Inf last), then sum

    def observe(self, value: float, **labels: object) -> None:
        key = self._key(labels)
        index = bisect.bisect_left(self.bounds, value)  # first bound >= value: "le" is inclusive
        with self._lock:
            series = self._series.get(key)
            if series is None:
                series = self._series[key] = [0.0] * (len(self.bounds) + 2)
            series[index] += 1
            series[-1] += value

    def count(self, **labels: object) -> int:
        with self._lock:
            series = self._series.get(self._key(labels))
            return 0 if series is None else int(sum(series[:-1]))

    def collect(self) -> Family:
        fam = Family(self.name, self.kind, self.help)
        with self._lock:
            for key, series in self._series.items():
                labels = dict(zip(self.labelnames, key))
                running = 0.0
                for bound, n in zip((*self.bounds, math.inf), series[:-1]):
                    running += n
                    fam.add(running, "_bucket", **labels, le=_format_value(bound))
                fam.add(series[-1], "_sum", **labels)
                fam.add(running, "_count", **labels)
        return fam


Collector = Callable[[], Iterable[Family]]


class Registry:
    """Instruments plus collectors, rendered together by ``render()``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._instruments: dict[str, _Instrument] = {}
        self._collectors: list[Collector] = []
        self._owners: set[str] = set()
        self.collector_errors = 0

    def claim(self, owner: str) -> None:
        """Reserve a label value (e.g. a router's name) so two exporters never emit the same series."""
        with self._lock:
            if owner in self._owners:
                raise ValueError(f"{owner!r} already exports into this registry; give each router its own name=")
            self._owners.add(owner)

    def _register(self, instrument: _Instrument) -> _Instrument:
        with self._lock:
            existing = self._instruments.get(instrument.name)
            if existing is not None:
                if type(existing) is not type(instrument) or existing.labelnames != instrument.labelnames:
                    raise ValueError(f"metric {instrument.name!r} is already registered with another type or labels")
                return existing
            self._instruments[instrument.name] = instrument
            return instrument

    def counter(self, name: str, help: str, labelnames: Sequence[str] = ()) -> Counter:
        """The counter ``name`` (created on first use; the same object afterwards)."""
        return self._register(Counter(name, help, labelnames))  # type: ignore[return-value]

    def gauge(self, name: str, help: str, labelnames: Sequence[str] = ()) -> Gauge:
        return self._register(Gauge(name, help, labelnames))  # type: ignore[return-value]

    def histogram(self, name: str, help: str, labelnames: Sequence[str] = (),
                  buckets: Sequence[float] = DEFAULT_BUCKETS) -> Histogram:
        return self._register(Histogram(name, help, labelnames, buckets))  # type: ignore[return-value]

    def add_collector(self, collector: Collector) -> None:
        """Call ``collector()`` at every scrape; it returns ``Family`` objects read from counters kept elsewhere."""
        with self._lock:
            self._collectors.append(collector)

    def collect(self) -> list[Family]:
        """Every family, those of the same name merged (first help and type win). A failing collector is logged
        and counted in ``tierswitch_metrics_collector_errors_total``; the scrape goes on."""
        with self._lock:
            instruments = list(self._instruments.values())
            collectors = list(self._collectors)
        families = [i.collect() for i in instruments]
        for collector in collectors:
            try:
                families.extend(collector())
            except Exception:  # a metrics bug must never break the scrape (nor the service)
                with self._lock:  # concurrent scrapes (the server is threaded) must not lose a count
                    self.collector_errors += 1
                log.exception("metrics collector %r failed", collector)
        families.append(Family("tierswitch_metrics_collector_errors_total", "counter",
                               "Metrics collectors that raised during a scrape.").add(self.collector_errors))
        merged: dict[str, Family] = {}
        for fam in families:
            if fam.name in merged:
                merged[fam.name].samples.extend(fam.samples)
            else:
                merged[fam.name] = Family(check_name(fam.name), fam.kind, fam.help, list(fam.samples))
        return list(merged.values())

    def render(self) -> str:
        """The Prometheus text exposition of every metric."""
        lines: list[str] = []
        for fam in self.collect():
            lines.append(f"# HELP {fam.name} {_escape_help(fam.help)}")
            lines.append(f"# TYPE {fam.name} {fam.kind}")
            for s in fam.samples:
                labels = ",".join(f'{k}="{_escape_label(v)}"' for k, v in s.labels.items())
                lines.append(f"{s.name}{{{labels}}} {_format_value(s.value)}" if labels
                             else f"{s.name} {_format_value(s.value)}")
        return "\n".join(lines) + "\n"


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


_DEFAULT: Registry | None = None
_DEFAULT_LOCK = threading.Lock()


def default_registry() -> Registry:
    """The process-wide registry used when none is given (created on first use)."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None:
            _DEFAULT = Registry()
        return _DEFAULT
