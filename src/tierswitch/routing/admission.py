"""Admission: validate and measure an input, digest it, and apply the capability filter.

Everything here is pure (no I/O), so the sync and async cores share it as it is.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from tierswitch.digest import digest_of
from tierswitch.errors import NoCapableTier
from tierswitch.routing.state import RoutingState
from tierswitch.types import Features, Request

__all__ = ["Admitted", "admit", "capable_tiers"]


class Admitted(NamedTuple):
    """An input the router accepted: its request, features, the capable tiers (cheapest first), and the
    ``(tier, version)`` pairs its answer may be cached under, strongest first (empty: the answer must not be cached
    or shared, e.g. a sampled generation)."""

    request: Request
    features: Features
    capable: tuple[str, ...]
    cache_keys: tuple[tuple[str, str], ...]


def admit(state: RoutingState, x: Any, modality: str | None) -> Admitted:
    """Measure and digest ``x``; raises ``InvalidInput``/``InputTooLarge`` (from the digest) or ``NoCapableTier``."""
    features = state.estimator.features(x, modality)
    request = Request(x, features.modality, digest_of(x, state.max_input_bytes))
    capable = capable_tiers(state, features.modality, features.length)
    if not capable:
        accepts = "; ".join(f"{n}: {state.tiers[n].capabilities.describe()}" for n in state.tier_order)
        raise NoCapableTier(
            f"no tier accepts a {features.modality} input of length {features.length} ({accepts}); "
            "add a tier that does, raise a max_length, or pass modality= if detection was wrong"
        )
    tiers = state.tiers
    keys = tuple([(n, tiers[n].version) for n in reversed(capable)
                  if n in state.always_cacheable or tiers[n].cacheable(x)])
    return Admitted(request, features, capable, keys)


def capable_tiers(state: RoutingState, modality: str, length: int) -> tuple[str, ...]:
    """Names of the tiers that accept this input, cheapest first.

    Per modality, the tiers that take it and the smallest length cap among them are computed once; an input under
    that cap (the usual case) gets the precomputed tuple without looking at each tier.
    """
    known = state.capable_by_modality.get(modality)
    if known is None:
        names = tuple(n for n in state.tier_order if state.tiers[n].accepts(modality, 1))
        caps = [state.tiers[n].capabilities.max_length for n in names]
        known = (names, min((c for c in caps if c is not None), default=2**62))
        state.capable_by_modality[modality] = known
    if length <= known[1]:
        return known[0]
    return tuple(n for n in known[0] if state.tiers[n].accepts(modality, length))
