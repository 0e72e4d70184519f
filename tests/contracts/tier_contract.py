"""The contract every Tier adapter keeps, run against each implementation by tests/test_tiers.py.

``predict(batch)`` returns one finite Prediction per item, in order, stamped with the tier's name and version and
priced by its cost model; a model error becomes a TierFailure naming the tier; NaN/inf becomes NonFiniteOutput.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from tierswitch.errors import NonFiniteOutput, TierFailure
from tierswitch.tiers.base import CostModel, Tier


class TierContract:
    """Subclass with ``make_tier(cost)``, ``inputs()`` (a few valid inputs), ``make_failing_tier()`` and
    ``make_nan_tier()``."""

    def make_tier(self, cost: CostModel) -> Tier:
        raise NotImplementedError

    def inputs(self) -> list[Any]:
        raise NotImplementedError

    def make_failing_tier(self) -> Tier:
        raise NotImplementedError

    def make_nan_tier(self) -> Tier:
        raise NotImplementedError

    def test_one_prediction_per_item_in_order(self) -> None:
        tier = self.make_tier(CostModel(per_call=2.0, per_unit=0.5))
        xs = self.inputs()
        predictions = tier.predict(xs, [3] * len(xs))
        assert len(predictions) == len(xs)
        singles = [tier.predict_one(x, 3) for x in xs]
        for batched, single in zip(predictions, singles):
            assert batched.tier == tier.name and batched.tier_version == tier.version
            assert batched.cost == pytest.approx(2.0 + 0.5 * 3)
            assert batched.latency_s >= 0 and math.isfinite(batched.latency_s)
            assert _same(batched.output, single.output)
            if batched.confidence is not None:
                assert 0.0 <= batched.confidence <= 1.0

    def test_version_bump_is_stamped_on_predictions(self) -> None:
        tier = self.make_tier(CostModel())
        tier.set_version("7")
        assert tier.predict_one(self.inputs()[0]).tier_version == "7"

    def test_model_error_is_a_tier_failure_naming_the_tier(self) -> None:
        tier = self.make_failing_tier()
        with pytest.raises(TierFailure) as info:
            tier.predict(self.inputs())
        assert info.value.tier == tier.name and tier.name in str(info.value)
        assert info.value.__cause__ is not None

    def test_non_finite_output_is_refused(self) -> None:
        tier = self.make_nan_tier()
        with pytest.raises(NonFiniteOutput):
            tier.predict(self.inputs())


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except ValueError:  # arrays
        import numpy as np

        return bool(np.array_equal(a, b))
