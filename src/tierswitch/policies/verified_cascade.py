"""``VerifiedCascade``: a cascade for generated answers, accepting a cheap tier's answer when a ``Signal`` scores
it at or above that tier's threshold (logprob confidence, a verifier, a format check, self-verification).

Every verdict records which signal decided, with its score and threshold: in ``ctx.verdicts[tier]`` (the router
writes it into the escalation trace, e.g. ``escalate gpt4 mixtral format 0.000 < 0.5``), ``policy.counts`` counts
(signal, accepted) pairs, and ``policy.last_verdicts`` keeps the most recent ones by request digest.
"""

from __future__ import annotations

import importlib
import threading
from collections import Counter, OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tierswitch.errors import ConfigError
from tierswitch.policies.cascade import Cascade
from tierswitch.policies.format_check import ENDS_WITH_NUMBER, FormatCheck
from tierswitch.policies.verify import AllOf, LogprobConfidence, Signal, Verifier, done_spending, spending
from tierswitch.types import Prediction, RoutingContext
from tierswitch.validation import number, only_keys, section

__all__ = ["Verdict", "VerifiedCascade", "from_config", "signal_from_config"]


@dataclass(frozen=True, slots=True)
class Verdict:
    """Why an answer was accepted or escalated: the ``signal`` that decided (None: the tier has no threshold)."""

    tier: str
    signal: str | None
    score: float | None
    threshold: float | None
    accepted: bool

    def detail(self) -> str:
        if self.signal is None:
            return f"{self.tier} has no threshold"
        score = "none" if self.score is None else f"{self.score:.3f}"
        return f"{self.signal} {score} {'>=' if self.accepted else '<'} {self.threshold:g}"


class VerifiedCascade(Cascade):
    """Cheapest capable tier first (or ``start``); accept an answer when ``signal`` (one for all tiers, or a
    mapping tier -> signal) scores it at least ``thresholds[tier]``; tiers without a threshold accept every answer.
    ``trust``/``target_agreement`` move thresholds by live agreement exactly as in ``Cascade``."""

    def __init__(self, signal: Signal | Mapping[str, Signal], thresholds: Mapping[str, float], *,
                 start: str | None = None, trust: float = 0.0, target_agreement: float = 0.9,
                 remember: int = 1024) -> None:
        super().__init__(thresholds, start=start, trust=trust, target_agreement=target_agreement)
        if isinstance(signal, Signal):
            self.signal: Signal | None = signal
            self.signals: dict[str, Signal] = {}
        elif isinstance(signal, Mapping) and all(isinstance(s, Signal) for s in signal.values()):
            self.signal, self.signals = None, dict(signal)
            missing = [t for t in self.thresholds if t not in self.signals]
            if missing:
                raise ConfigError(f"policy.signals.{missing[0]}", "a tier with a threshold needs a signal")
        else:
            raise ConfigError("policy.signal", f"must be a Signal or a mapping tier -> Signal, got {signal!r}")
        self.counts: Counter[tuple[str | None, bool]] = Counter()
        self.last_verdicts: OrderedDict[tuple[str, str], Verdict] = OrderedDict()
        self._remember = remember
        self._lock = threading.Lock()

    def signal_for(self, tier: str) -> Signal | None:
        return self.signals.get(tier, self.signal)

    def verdict(self, ctx: RoutingContext, prediction: Prediction) -> Verdict:
        """Judge ``prediction`` (calls the signal; ``accept`` records the result)."""
        needed = self.threshold_for(ctx, prediction.tier)
        signal = self.signal_for(prediction.tier)
        if needed is None or signal is None:
            return Verdict(prediction.tier, None, None, None, True)
        payload = ctx.request.payload
        spent, token = spending()
        try:
            if isinstance(signal, AllOf):
                decider, score = signal.weakest(payload, prediction)
            else:
                decider, score = signal, signal.score(payload, prediction)
        finally:
            done_spending(token)
        ctx.extra_cost += sum(spent)  # a self-verification call is paid by this request
        return Verdict(prediction.tier, decider.name, score, needed, score is not None and score >= needed)

    def accept(self, ctx: RoutingContext, prediction: Prediction) -> bool:
        verdict = self.verdict(ctx, prediction)
        if verdict.signal is not None:
            ctx.verdicts[prediction.tier] = verdict.detail()  # the router puts it in the accept/escalate trace
        with self._lock:
            self.counts[(verdict.signal, verdict.accepted)] += 1
            key = (ctx.request.digest, prediction.tier)
            self.last_verdicts[key] = verdict
            self.last_verdicts.move_to_end(key)
            while len(self.last_verdicts) > self._remember:
                self.last_verdicts.popitem(last=False)
        return verdict.accepted

    def accept_detail(self, ctx: RoutingContext, prediction: Prediction) -> str:
        """The recorded verdict for this request and tier as trace text (e.g. ``format 0.000 < 0.5``)."""
        with self._lock:
            verdict = self.last_verdicts.get((ctx.request.digest, prediction.tier))
        return verdict.detail() if verdict is not None else ""

    def tier_names(self) -> set[str]:
        return super().tier_names() | set(self.signals)

    def to_config(self) -> dict[str, Any]:
        config = super().to_config()
        config["kind"] = "verified_cascade"
        if self.signal is not None:
            config["signal"] = self.signal.to_config()
        else:
            config["signals"] = {t: s.to_config() for t, s in self.signals.items()}
        return config

    def __repr__(self) -> str:
        return f"VerifiedCascade(signal={self.signal or self.signals!r}, thresholds={self.thresholds})"


def signal_from_config(config: Any, field: str) -> Signal:
    """``{kind: logprob}``, ``{kind: format, regex: ..., schema: {required: {...}}}`` (or ``preset:
    ends_with_number``), ``{kind: verifier, function: "package.module:function"}``, ``{kind: all_of, signals:
    [...]}``. Self-verification needs a tier object: build ``SelfVerify`` in code."""
    config = section(config, field)
    kind = config.get("kind")
    if kind == "logprob":
        only_keys(config, field, {"kind"})
        return LogprobConfidence()
    if kind == "format":
        only_keys(config, field, {"kind", "regex", "schema", "preset"})
        preset = config.get("preset")
        if preset is not None and preset != "ends_with_number":
            raise ConfigError(f"{field}.preset", f"unknown preset {preset!r}; allowed: ['ends_with_number']")
        regex = ENDS_WITH_NUMBER if preset else config.get("regex")
        if regex is not None and not isinstance(regex, str):
            raise ConfigError(f"{field}.regex", f"must be a string, got {regex!r}")
        try:
            return FormatCheck(regex, config.get("schema"), name="format:ends_with_number" if preset else None)
        except ConfigError as exc:
            raise ConfigError(field + exc.field.removeprefix("policy.signal"), str(exc).split(": ", 1)[-1]) from exc
    if kind == "verifier":
        only_keys(config, field, {"kind", "function", "name"})
        target = config.get("function")
        if not isinstance(target, str) or ":" not in target:
            raise ConfigError(f"{field}.function", f"must be 'package.module:function', got {target!r}")
        module, _, attr = target.partition(":")
        try:
            fn = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"{field}.function", f"cannot import {target!r}: {exc}") from exc
        return Verifier(fn, name=str(config.get("name", attr)), source=target)
    if kind == "all_of":
        only_keys(config, field, {"kind", "signals"})
        children = config.get("signals")
        if not isinstance(children, list) or not children:
            raise ConfigError(f"{field}.signals", "must be a non-empty list of signals")
        return AllOf([signal_from_config(c, f"{field}.signals[{i}]") for i, c in enumerate(children)])
    raise ConfigError(f"{field}.kind", f"unknown signal kind {kind!r}; allowed: ['all_of', 'format', 'logprob', "
                                       "'verifier']")


def from_config(config: Mapping[str, Any], field: str = "policy") -> VerifiedCascade:
    """The ``verified_cascade`` policy kind:
    ``{kind: verified_cascade, signal: {kind: format, preset: ends_with_number}, thresholds: {small: 0.5}}``."""
    config = section(config, field)
    only_keys(config, field, {"kind", "signal", "signals", "thresholds", "start", "trust", "target_agreement"})
    thresholds = section(config.get("thresholds", {}), f"{field}.thresholds")
    values = {str(t): number(thresholds, t, f"{field}.thresholds", low=0.0, high=1.0) for t in thresholds}
    if ("signal" in config) == ("signals" in config):
        raise ConfigError(f"{field}.signal", "give either signal (all tiers) or signals (per tier)")
    signal: Signal | dict[str, Signal]
    if "signal" in config:
        signal = signal_from_config(config["signal"], f"{field}.signal")
    else:
        per_tier = section(config["signals"], f"{field}.signals")
        signal = {str(t): signal_from_config(c, f"{field}.signals.{t}") for t, c in per_tier.items()}
    start = config.get("start")
    if start is not None and not isinstance(start, str):
        raise ConfigError(f"{field}.start", f"must name a tier, got {start!r}")
    return VerifiedCascade(signal, values, start=start, trust=number(config, "trust", field, 0.0, 0.0, 1.0),
                           target_agreement=number(config, "target_agreement", field, 0.9, 0.0, 1.0))
