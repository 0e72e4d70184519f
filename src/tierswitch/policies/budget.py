"""``BudgetController``: hold a cost, full-tier-share or latency target online by moving the score threshold(s).

How it steers. Every decision ranks the request's score among the last ``score_window`` scores (an exact online
quantile); a request whose score is in the top ``level`` fraction goes to the controlled (most expensive) tier,
the rest are split among the cheaper tiers by ``lower_split``. Because the threshold is a quantile of *recent*
scores, it moves with the traffic: when the stream gets harder, the threshold rises and the tier mix holds.

``level`` is a feed-forward estimate of the share that meets the target plus a feedback correction from realised
outcomes (what was actually served and paid, fed in through :meth:`observe`)::

    level = clip(feed_forward + integral + gain * error, 0, 1)

where ``error`` is the distance from target over the trailing ``window`` requests in share units (proportional
term: it pays back a surplus or deficit within the window, so every window stays on target) and ``integral``
accumulates ``integral_gain * error`` (it removes the steady bias a lagging quantile leaves under drift).

Targets: ``full_share`` (max share of requests that call the controlled tier), ``mean_cost`` (max mean cost per
request over the window), ``cost_rate`` (a token bucket of ``value`` cost units per second with ``burst``
capacity, on an injected clock; the controlled tier is refused while the bucket cannot pay for it) and
``latency_p95`` (p95 of request latency in seconds: at most 5% of the window slower than ``value``; feed-forward
from each path's latency distribution). The router must call :meth:`observe` for every request: register it as a
decision hook (``router.add_hook(controller.observe)``). Counters may be shared by a fleet through ``RedisCounters``.

This module is the control law, the policy and the ``budget`` config kind (``from_config``/``to_config``); checking
its parameters lives in ``tierswitch.policies.budget_config``.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from tierswitch.errors import ConfigError
from tierswitch.policies.base import Policy
from tierswitch.policies.budget_config import FIELDS, TARGETS, check_settings
from tierswitch.policies.quantile import Counters, LocalCounters, WindowQuantile, counters_from_config
from tierswitch.types import Decision, DecisionRecord, RoutingContext
from tierswitch.validation import describe, only_keys, rebased, section

__all__ = ["TARGETS", "BudgetController", "from_config", "to_config"]


class BudgetController(Policy):
    """Hold ``target`` at ``value`` by moving the score threshold(s) between ``tiers`` (cheapest first; the last
    one is the controlled tier). Call :meth:`observe` with every served request; read :meth:`status`."""

    def __init__(
        self,
        target: str,
        value: float,
        *,
        tiers: Sequence[str] = ("base", "full"),
        window: int = 1000,
        score_window: int | None = None,
        gain: float = 20.0,
        integral_gain: float = 0.02,
        lower_split: Sequence[float] | None = None,
        burst: float | None = None,
        min_samples: int = 20,
        seed: int = 0,
        clock: Callable[[], float] = time.monotonic,
        counters: Counters | None = None,
    ) -> None:
        settings = check_settings(target, value, tiers, window, score_window, gain, integral_gain, lower_split, burst,
                                  min_samples, seed)
        self.target, self.value, self.tiers = settings.target, settings.value, settings.tiers
        self.window, self.score_window = settings.window, settings.score_window
        self.gain, self.integral_gain = settings.gain, settings.integral_gain
        self.lower_split, self.burst = settings.lower_split, settings.burst
        self.min_samples, self.seed = settings.min_samples, settings.seed
        self.clock = clock
        self.counters = counters if counters is not None else LocalCounters(window)
        self.full = self.tiers[-1]
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._scores = WindowQuantile(self.score_window)
        self._latency = WindowQuantile(window)
        self._path_latency = (WindowQuantile(window), WindowQuantile(window))  # (lower tiers, controlled tier)
        self._path_cost: list[float | None] = [None, None]  # realised moving averages (lower, controlled)
        self._priced: list[float | None] = [None, None]  # the tiers' prices for the last request
        self._integral = 0.0
        self._level = self.value if target == "full_share" else 0.0
        self._bucket: float | None = None
        self._bucket_t = 0.0
        self._arrivals: deque[float] = deque(maxlen=window)

    # ---- the control law -------------------------------------------------------------------------------------
    def _path_costs(self) -> tuple[float, float] | None:
        """Mean cost of a request on the lower path and on the controlled path: realised (moving average) once
        seen, priced by the tiers' cost models for the last request until then; None while they cannot differ."""
        low, high = (seen if seen is not None else priced for seen, priced in zip(self._path_cost, self._priced))
        if low is None or high is None or high - low <= 1e-12:
            return None
        return low, high

    def _price(self, ctx: RoutingContext) -> None:
        if self._path_cost[0] is None or self._path_cost[1] is None:
            length = ctx.features.length
            priced = [ctx.tiers[t].cost_model.cost(length) if t in ctx.tiers else 0.0 for t in self.tiers]
            self._priced = [sum(w * c for w, c in zip(self.lower_split, priced)), priced[-1]]

    def _refill(self) -> float:
        now = self.clock()
        burst = cast(float, self.burst)  # set for cost_rate, the only target with a bucket (budget_config)
        bucket = self._bucket
        if bucket is None:
            bucket, self._bucket_t = burst / 2, now  # start half full: room to spend and to save
        self._bucket = bucket = min(burst, bucket + (now - self._bucket_t) * self.value)
        self._bucket_t = now
        return bucket

    def _error(self) -> float:
        """Distance below target over the trailing window, in share-of-requests units (positive: room to spend)."""
        n, full, cost = self.counters.totals()
        if self.target == "latency_p95":
            # p95 <= T  <=>  at most 5% of requests slower than T: the error is in "share slower than T", turned
            # into share of the controlled path by how much more often that path is slower than T
            if not len(self._latency):
                return 0.0
            lower, controlled = self._path_latency
            slope = (lower.cdf(self.value) - controlled.cdf(self.value)
                     if len(lower) and len(controlled) else 1.0)
            return (0.05 - (1.0 - self._latency.cdf(self.value))) / max(slope, 0.05)
        costs = self._path_costs()
        if self.target == "cost_rate":
            burst = cast(float, self.burst)
            return 0.0 if costs is None else (self._refill() - burst / 2) / ((costs[1] - costs[0]) * self.window)
        if not n:
            return 0.0
        if self.target == "full_share":
            return self.value - full / n
        return 0.0 if costs is None else (self.value - cost / n) / (costs[1] - costs[0])

    def _feed_forward(self) -> float:
        if self.target == "full_share":
            return self.value
        if self.target == "latency_p95":
            return self._latency_share()
        per_request = self.value
        if self.target == "cost_rate":
            times = self._arrivals
            if len(times) < 2 or times[-1] <= times[0]:
                return 0.0
            per_request = self.value * (times[-1] - times[0]) / (len(times) - 1)
        costs = self._path_costs()
        if costs is None:  # the paths cost the same (or nothing is known): only what is affordable matters
            return 1.0 if self._priced[1] is not None and per_request >= self._priced[1] else 0.0
        return (per_request - costs[0]) / (costs[1] - costs[0])

    def _latency_share(self) -> float:
        """Largest share p of the controlled path whose latency mixture still has p95 <= target."""
        lower, full = self._path_latency
        if len(lower) < self.min_samples or len(full) < self.min_samples:
            return 0.5  # not measured yet: send traffic both ways to learn each path's latency
        f_low, f_full = lower.cdf(self.value), full.cdf(self.value)
        if f_full >= 0.95:
            return 1.0
        if f_low <= f_full:
            return 0.0
        return max(0.0, min(1.0, (f_low - 0.95) / (f_low - f_full)))

    def _compute_level(self) -> float:
        return max(0.0, min(1.0, self._feed_forward() + self._integral + self.gain * self._error()))

    # ---- Policy ----------------------------------------------------------------------------------------------
    def decide(self, ctx: RoutingContext) -> Decision:
        score = ctx.score
        with self._lock:
            self._arrivals.append(self.clock())
            self._price(ctx)
            level = self._compute_level()
            if self.target == "cost_rate":
                costs = self._path_costs()
                if costs is not None and self._refill() < costs[1]:
                    level = 0.0  # the bucket cannot pay for the controlled tier now
            self._level = level
            scores = self._scores
            if len(scores) < self.min_samples:
                lo, hi = 0.0, 1.0  # cold start: no ranking yet, choose at random with the target's odds
            else:
                lo, hi = scores.cdf_below(score), scores.cdf(score)  # ties share their rank interval
                if not math.isfinite(score):
                    lo = hi = 1.0  # an unscored request counts as the hardest
            u = lo if hi <= lo else lo + (hi - lo) * self._rng.random()
            if math.isfinite(score):
                scores.add(score)
        edges = self._edges(level)
        band = next((i for i, edge in enumerate(edges) if u < edge), None)
        if band is None:  # the top rank: the most expensive band that is open (none of width 0)
            band = max(i for i, edge in enumerate(edges) if edge > (edges[i - 1] if i else 0.0))
        propensity = 1.0 if hi <= lo else max(0.0, min(hi, edges[band]) - max(lo, edges[band - 1] if band else 0.0))
        propensity = propensity / (hi - lo) if hi > lo else 1.0
        tier = self._capable_from(band, ctx.capable)
        reason = f"budget {self.target}={self.value:g}: level {level:.3f}, score rank {u:.3f}"
        if tier is None:
            return Decision(None, reason + ": no capable tier", self)
        return Decision(tier, reason, self, propensity)

    def _edges(self, level: float) -> list[float]:
        """Upper rank edge of each tier's band: the lower tiers share [0, 1 - level), the controlled tier the rest."""
        edges, acc = [], 0.0
        for weight in self.lower_split:
            acc += weight * (1.0 - level)
            edges.append(acc)
        edges[-1] = 1.0 - level
        edges.append(1.0)
        return edges

    def _capable_from(self, band: int, capable: Sequence[str]) -> str | None:
        order = list(range(band, len(self.tiers))) + list(range(band - 1, -1, -1))
        return next((self.tiers[i] for i in order if self.tiers[i] in capable), None)

    def observe(self, record: DecisionRecord) -> None:
        """Feed one served request (a router decision hook): what it cost, how long it took, which tiers it called."""
        full_called = not record.cached and (record.tier == self.full or self.full in record.predictions)
        cost = float(record.cost) if math.isfinite(record.cost) else 0.0
        latency = float(record.latency_s) if math.isfinite(record.latency_s) else 0.0
        with self._lock:
            self.counters.add(1.0 if full_called else 0.0, cost)
            self._latency.add(latency)
            if not record.cached:
                path = 1 if full_called else 0
                self._path_latency[path].add(latency)
                previous = self._path_cost[path]
                alpha = 2.0 / (min(self.window, 200) + 1)
                self._path_cost[path] = cost if previous is None else previous + alpha * (cost - previous)
            if self.target == "cost_rate":
                self._bucket = max(-cast(float, self.burst), self._refill() - cost)
            self._integral = max(-1.0, min(1.0, self._integral + self.integral_gain * self._error()))

    def status(self) -> dict[str, Any]:
        """Where the controller stands: ``realised`` over the window and its ``distance`` from target (positive:
        over), the share ``level`` and score ``threshold`` in force, and the window's share, mean cost and p95."""
        with self._lock:
            n, full, cost = self.counters.totals()
            p95 = self._latency.quantile(0.95) if len(self._latency) else None
            realised = {"full_share": full / n if n else None, "mean_cost": cost / n if n else None,
                        "latency_p95": p95, "cost_rate": None}[self.target]
            return {
                "target": self.target, "value": self.value, "realised": realised,
                "distance": None if realised is None else realised - self.value,
                "bucket": self._bucket, "level": self._level, "integral": self._integral,
                "threshold": self._scores.quantile(1.0 - self._level) if len(self._scores) else None,
                "requests": n, "full_share": full / n if n else None, "mean_cost": cost / n if n else None,
                "p95_latency_s": p95,
            }

    def tier_names(self) -> set[str]:
        return set(self.tiers)

    def to_config(self) -> dict[str, Any]:
        return to_config(self)

    @classmethod
    def from_config(cls, config: Mapping[str, Any], field: str = "policy") -> BudgetController:
        """Build from ``{"kind": "budget", "target": ..., "value": ..., ...}`` (see ``from_config``)."""
        return from_config(config, field)

    def __repr__(self) -> str:
        return f"BudgetController({self.target}={self.value:g}, tiers={list(self.tiers)})"


def to_config(controller: BudgetController) -> dict[str, Any]:
    """``controller``'s parameters as a ``budget`` policy config (what ``from_config`` reads back)."""
    config: dict[str, Any] = {
        "kind": "budget", "target": controller.target, "value": controller.value, "tiers": list(controller.tiers),
        "window": controller.window, "score_window": controller.score_window, "gain": controller.gain,
        "integral_gain": controller.integral_gain, "lower_split": list(controller.lower_split),
        "min_samples": controller.min_samples, "seed": controller.seed,
    }
    if controller.burst is not None:
        config["burst"] = controller.burst
    counters = controller.counters.to_config()
    if counters is not None:
        config["counters"] = counters
    return config


def from_config(config: Mapping[str, Any], field: str = "policy") -> BudgetController:
    """The ``budget`` policy kind: ``{"kind": "budget", "target": "full_share", "value": 0.3, "tiers": [...],
    "window": 1000, ..., "counters": {"kind": "redis", "name": ..., "url": ...}}``. Unknown keys are refused;
    every error names ``field`` plus the key at fault."""

    config = section(config, field)
    only_keys(config, field, FIELDS | {"kind"})
    for name in ("target", "value"):
        if name not in config:
            raise ConfigError(f"{field}.{name}", f"is required for a budget policy (targets: {list(TARGETS)})")
    kwargs = {k: v for k, v in config.items() if k not in ("kind", "target", "value", "counters")}
    tiers = kwargs.get("tiers", [])
    if not isinstance(tiers, list) or not all(isinstance(t, str) for t in tiers):
        raise ConfigError(f"{field}.tiers", f"must be a list of tier names, got {describe(tiers)}")
    try:
        counters = counters_from_config(config.get("counters"))
        return BudgetController(config["target"], config["value"], counters=counters, **kwargs)
    except ConfigError as exc:
        raise rebased(exc, "policy", field) from exc
