"""End to end on real data: three scikit-learn models of rising strength on the bundled digits, routed by Cascade.

Claim: the router's accuracy is within 1 point of the full tier's while its mean cost is at most half of
always-full. Costs are stated relative units per call (base 1, distilled 3, full 10). Seeded split; inputs scored
are the held-out half, never the half that trained the models.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.calibration import CalibratedClassifierCV
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.svm import SVC

from tierswitch import Cascade, Fixed, Router, SklearnTier


def _pool_4x4(images: np.ndarray) -> np.ndarray:
    """8x8 digits to a coarse 4x4 average: the cheap model sees less."""
    return images.reshape(-1, 4, 2, 4, 2).mean(axis=(2, 4)).reshape(-1, 16) / 16


def _scale(images: np.ndarray) -> np.ndarray:
    return images / 16


@pytest.fixture(scope="module")
def digits_tiers():
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.5, random_state=0, stratify=y)
    base = make_pipeline(FunctionTransformer(_pool_4x4), LogisticRegression(max_iter=3000, C=3)).fit(X_train, y_train)
    distilled = make_pipeline(FunctionTransformer(_scale), LogisticRegression(max_iter=3000, C=1)).fit(X_train, y_train)
    full = make_pipeline(
        FunctionTransformer(_scale),
        CalibratedClassifierCV(SVC(C=10, gamma=0.02, random_state=0), cv=5, ensemble=False),
    ).fit(X_train, y_train)
    tiers = [SklearnTier("base", base, cost=1.0), SklearnTier("distilled", distilled, cost=3.0),
             SklearnTier("full", full, cost=10.0)]
    return tiers, list(X_test), y_test


def _score(router: Router, xs, y) -> tuple[float, float]:
    results = router.batch(xs, modality="tabular")
    accuracy = float(np.mean([r.output == label for r, label in zip(results, y)]))
    return accuracy, float(np.mean([r.cost for r in results]))


def test_cascade_matches_full_accuracy_at_half_the_cost(digits_tiers):
    tiers, xs, y = digits_tiers
    full_acc, full_cost = _score(Router(tiers, Fixed("full"), cache=None), xs, y)
    base_acc, _ = _score(Router(tiers, Fixed("base"), cache=None), xs, y)
    routed_acc, routed_cost = _score(Router(tiers, Cascade({"base": 0.8, "distilled": 0.8}), cache=None), xs, y)
    assert base_acc < full_acc - 0.05  # the tiers really differ in strength
    assert routed_acc >= full_acc - 0.01, (routed_acc, full_acc)
    assert routed_cost <= 0.5 * full_cost, (routed_cost, full_cost)


def test_single_calls_agree_with_batch(digits_tiers):
    tiers, xs, y = digits_tiers
    batch_router = Router(tiers, Cascade({"base": 0.8, "distilled": 0.8}), cache=None)
    single_router = Router(tiers, Cascade({"base": 0.8, "distilled": 0.8}), cache=None)
    batched = batch_router.batch(xs[:60], modality="tabular")
    for x, b in zip(xs[:60], batched):
        s = single_router(x, modality="tabular")
        assert (s.output, s.tier, s.cost) == (b.output, b.tier, b.cost)
