"""ReplayTier: recorded outcomes served through the normal Router and policies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tierswitch.bench.spec import load_spec
from tierswitch.bench.table import load_replay
from tierswitch.digest import digest_of
from tierswitch.errors import AllTiersFailed, ConfigError, TierFailure
from tierswitch.policies import Cascade, Fixed, Threshold
from tierswitch.router import Router
from tierswitch.tiers.base import CostModel
from tierswitch.tiers.replay import Recorded, ReplayTier

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def small():
    return load_replay(load_spec(DATA / "replay_small.yaml", base_dir=DATA))


def test_replay_tier_returns_the_recorded_outcome_cost_and_latency(small):
    base, mid, full = ReplayTier.from_replay(small)
    p = base.predict_one(small.inputs[0])
    assert (p.output, p.cost, p.latency_s, p.tier) == (1.0, 0.1, 0.010, "base")
    q = mid.predict([small.inputs[1], small.inputs[0]])
    assert [x.output for x in q] == [0.0, 1.0]
    assert [x.cost for x in q] == pytest.approx([0.5 + 0.01 * 20, 0.5 + 0.01 * 10])
    assert full.predict_one(small.inputs[2]).output == 1.0 and base.predict_one(small.inputs[2]).output == 0.25


def test_unknown_inputs_fail_loudly_and_fallback_off_keeps_them_visible(small):
    base, mid, full = ReplayTier.from_replay(small)
    with pytest.raises(TierFailure) as info:
        base.predict_one("never recorded")
    assert info.value.tier == "base"
    router = Router([base, full], Fixed("base"), cache=None, fallback=False)
    with pytest.raises(AllTiersFailed):
        router("never recorded")


def test_records_without_cost_use_the_cost_model_and_bare_outcomes_are_accepted():
    tier = ReplayTier("t", {digest_of("hello"): True, digest_of("bye"): Recorded(0.5, None)},
                      cost=CostModel(per_call=2.0, per_unit=1.0))
    p = tier.predict(["hello", "bye"], [3, 1])
    assert [(x.output, x.cost) for x in p] == [(1.0, 5.0), (0.5, 3.0)]


def test_conflicting_duplicates_are_refused_and_identical_ones_merged():
    with pytest.raises(ConfigError, match="recorded twice"):
        ReplayTier.from_pairs("t", [("a", 1.0), ("a", 0.0)])
    tier = ReplayTier.from_pairs("t", [("a", 1.0), ("a", 1.0)])
    assert len(tier.records) == 1


def test_router_with_fixed_policies_reproduces_each_tier_alone(small):
    tiers = ReplayTier.from_replay(small)
    for j, name in enumerate(small.tiers):
        router = Router(tiers, Fixed(name), cache=None, fallback=False)
        routed = [router(x) for x in small.inputs]
        assert np.mean([r.output for r in routed]) == small.outcomes[:, j].mean()
        assert np.mean([r.cost for r in routed]) == pytest.approx(small.costs[:, j].mean())
        assert {r.tier for r in routed} == {name}


def test_threshold_routing_matches_the_array_computation_in_single_and_batch_mode(small):
    tiers = ReplayTier.from_replay(small)

    class ByLength:  # a deterministic score: longer questions go further up
        probe = None
        uncertainty = "confidence"

        def features(self, x, modality=None):
            from tierswitch.estimator.features import extract_features

            return extract_features(x, modality)

        def score_features(self, features, x):
            return min(1.0, len(x) / 40)

    from tierswitch.bench.sweep import assign_by_cuts

    cuts = (0.4, 0.7)
    router = Router(tiers, Threshold(list(small.tiers), list(cuts)), estimator=ByLength(), cache=None,
                    fallback=False)
    scores = np.array([min(1.0, len(x) / 40) for x in small.inputs])
    assign = assign_by_cuts(scores, cuts)
    expected = small.outcomes[np.arange(len(small)), assign]
    single = [router(x) for x in small.inputs]
    batch = router.batch(small.inputs)
    assert [r.output for r in single] == expected.tolist() == [r.output for r in batch]
    assert [r.tier for r in single] == [small.tiers[a] for a in assign] == [r.tier for r in batch]


def test_cascade_pays_for_every_tier_it_called(small):
    tiers = ReplayTier.from_replay(small)
    # the replay has no confidences, so a cascade with a threshold escalates to the full tier every time
    router = Router(tiers, Cascade({"base": 0.5, "mid": 0.5}), cache=None, fallback=False)
    routed = router(small.inputs[0])
    assert routed.tier == "full"
    assert routed.cost == pytest.approx(small.costs[0].sum())


def test_records_can_be_keyed_by_row_id():
    tier = ReplayTier("t", {"r1": Recorded(1.0, 2.0), "r2": Recorded(0.0, 3.0)}, key=lambda x: x["id"])
    assert [(p.output, p.cost) for p in tier.predict([{"id": "r2", "text": "a"}, {"id": "r1", "text": "a"}])] == [
        (0.0, 3.0), (1.0, 2.0)]
    with pytest.raises(TierFailure, match="replay key"):
        tier.predict_one({"text": "no id"})
    built = ReplayTier.from_pairs("t", [({"id": "a", "text": "x"}, 1.0)], key=lambda x: x["id"])
    assert built.predict_one({"id": "a", "text": "other text"}).output == 1.0


def test_conflicting_duplicates_from_a_replay_table_serve_the_mean_with_a_warning():
    with pytest.warns(UserWarning, match="different outcomes"):
        tier = ReplayTier.from_pairs("t", [("a", Recorded(1.0, 2.0)), ("a", Recorded(0.0, 4.0)), ("b", 1.0)],
                                     duplicates="mean")
    assert tier.records[digest_of("a")] == Recorded(0.5, 3.0)
    assert tier.records[digest_of("b")] == Recorded(1.0)
