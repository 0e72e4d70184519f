"""A configured fallback order: which tier takes over when a tier fails.

The router's built-in rule (``fallback=True``) is "the next more expensive capable tier not tried yet, then the
cheaper ones, strongest first". A ``FallbackPlan`` overrides it per tier, e.g. to degrade to a cheaper tier when the
full tier is down instead of failing, or to forbid a fallback (``[]``)::

    fallback:
      base: [full]          # base failed: try full
      full: [distilled]     # full failed: degrade to the distilled student
      distilled: []         # distilled failed: no fallback, the request fails

Tiers not named keep the built-in rule. The plan is a directed graph and must have no cycle: a chain of fallbacks
has to end. A listed tier that cannot take the input or was already tried is skipped in favour of its own fallbacks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tierswitch.errors import ConfigError
from tierswitch.validation import describe

__all__ = ["FallbackPlan", "default_next", "fallback_from_config"]


def default_next(failed: str, capable: Sequence[str], tried: Sequence[str]) -> str | None:
    """The router's built-in rule: the next more expensive capable tier not tried, then cheaper ones, strongest
    first (``capable`` is ordered cheapest first)."""
    if failed in capable:
        for name in capable[capable.index(failed) + 1 :]:
            if name not in tried:
                return name
    for name in reversed(capable):
        if name not in tried and name != failed:
            return name
    return None


class FallbackPlan:
    """Per-tier fallback lists over the router's tier names; see the module docstring. Raises ``ConfigError`` for
    unknown tiers, wrong types, a tier that falls back to itself, and cycles."""

    def __init__(self, order: Mapping[str, Sequence[str]], tier_names: Sequence[str],
                 field: str = "router.fallback") -> None:
        if not isinstance(order, Mapping):
            raise ConfigError(field, f"must be a mapping of tier -> list of tiers, got {type(order).__name__}")
        known = list(tier_names)
        plan: dict[str, tuple[str, ...]] = {}
        for tier, targets in order.items():
            where = f"{field}.{tier}"
            if tier not in known:
                raise ConfigError(where, f"unknown tier {describe(tier)}; the router has {known}")
            if isinstance(targets, str):
                targets = [targets]
            elif targets is None:
                targets = []
            if not isinstance(targets, (list, tuple)) or not all(isinstance(t, str) for t in targets):
                raise ConfigError(where, f"must be a tier name or a list of tier names, got {describe(targets)}")
            for target in targets:
                if target not in known:
                    raise ConfigError(where, f"falls back to unknown tier {describe(target)}; the router has {known}")
                if target == tier:
                    raise ConfigError(where, "a tier cannot fall back to itself")
            if len(set(targets)) != len(targets):
                raise ConfigError(where, f"lists a tier twice: {list(targets)}")
            plan[tier] = tuple(targets)
        cycle = _find_cycle(plan)
        if cycle:
            raise ConfigError(
                f"{field}.{cycle[0]}",
                f"fallbacks form a cycle {' -> '.join(cycle)}; a chain of fallbacks must end, remove one of its links",
            )
        self.order = plan
        self.tier_names = tuple(known)

    def next_after(self, failed: str, capable: Sequence[str], tried: Sequence[str]) -> str | None:
        """The tier to try after ``failed``, or None (the request then fails with ``AllTiersFailed``)."""
        if failed not in self.order:
            return default_next(failed, capable, tried)
        stack = list(reversed(self.order[failed]))
        seen = {failed}
        while stack:  # depth first, in listed order; the graph is acyclic, ``seen`` only skips shared descendants
            name = stack.pop()
            if name in seen:
                continue
            seen.add(name)
            if name in capable and name not in tried:
                return name
            stack.extend(reversed(self.order.get(name, ())))
        return None

    def to_config(self) -> dict[str, list[str]]:
        return {tier: list(targets) for tier, targets in self.order.items()}

    def __repr__(self) -> str:
        return f"FallbackPlan({self.to_config()!r})"


def _find_cycle(plan: Mapping[str, Sequence[str]]) -> list[str] | None:
    """A cycle of the graph as a path that starts and ends on the same tier, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in plan.get(node, ()):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for start in plan:
        if start not in state:
            found = visit(start)
            if found:
                return found
    return None


def fallback_from_config(value: Any, tier_names: Sequence[str], field: str = "router.fallback") -> bool | FallbackPlan:
    """``true``/``false`` (the built-in rule, or none) or a mapping (a ``FallbackPlan``)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, Mapping):
        return FallbackPlan(value, tier_names, field)
    raise ConfigError(field, f"must be true, false or a mapping of tier -> fallback tiers, got {describe(value)}")
