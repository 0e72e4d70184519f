"""TorchTier: the tier contract, batched inference in eval/inference mode, and atomic weight swaps."""

from __future__ import annotations

import sys
import threading

import numpy as np
import pytest
import torch
from tests.contracts.tier_contract import TierContract
from torch import nn

from tierswitch.errors import ConfigError, TierFailure
from tierswitch.tiers.base import RawOutput
from tierswitch.tiers.torch import TorchTier

torch.set_num_threads(1)


def _stack(batch):
    return np.stack([np.asarray(x, dtype=np.float32) for x in batch])


def _linear(value: float, n_in: int = 4, n_out: int = 3) -> nn.Linear:
    """A layer whose every output equals ``value * sum(x)``: its outputs reveal which weights served."""
    layer = nn.Linear(n_in, n_out, bias=False)
    with torch.no_grad():
        layer.weight.fill_(value)
    return layer


class TestTorchContract(TierContract):
    def make_tier(self, cost):
        torch.manual_seed(0)
        return TorchTier("t", nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)), preprocess=_stack,
                         cost=cost)

    def inputs(self):
        return [np.arange(4) / 4, np.ones(4), np.zeros(4)]

    def make_failing_tier(self):
        return TorchTier("t", nn.Linear(5, 3), preprocess=_stack)  # wrong input width: torch raises

    def make_nan_tier(self):
        return TorchTier("t", nn.Linear(4, 3), preprocess=lambda b: np.full((len(b), 4), np.nan))


class _ModeProbe(nn.Module):
    """Records whether it ran in eval mode with gradients off."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(2, 2)
        self.seen: list[tuple[bool, bool]] = []

    def forward(self, x):
        self.seen.append((self.training, torch.is_inference_mode_enabled()))
        return self.lin(x)


def test_runs_batched_in_eval_and_inference_mode():
    probe = _ModeProbe().train()
    tier = TorchTier("t", probe, preprocess=_stack)
    predictions = tier.predict([np.ones(2), np.zeros(2), np.ones(2)])
    assert len(predictions) == 3
    assert probe.seen == [(False, True)]  # one forward pass for the whole batch


def test_default_postprocess_maps_argmax_through_classes_and_gives_probs():
    layer = nn.Linear(2, 3)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]))
        layer.bias.zero_()
    tier = TorchTier("t", layer, preprocess=_stack, classes=["cat", "dog", "eel"])
    a, b = tier.predict([np.array([3.0, 0.0]), np.array([0.0, 2.0])])
    assert (a.output, b.output) == ("cat", "dog")
    expected = np.exp([3.0, 0.0, 0.0]) / np.exp([3.0, 0.0, 0.0]).sum()
    np.testing.assert_allclose(a.probs, expected, rtol=1e-6)
    assert a.confidence == pytest.approx(expected.max())


def test_custom_postprocess_and_class_count_mismatch():
    tier = TorchTier("t", _linear(1.0), preprocess=_stack, postprocess=lambda out: [(float(r.sum()),) for r in out])
    assert tier.predict_one(np.ones(4)).output == pytest.approx(12.0)
    bad = TorchTier("t", _linear(1.0), preprocess=_stack, classes=["a", "b"])
    with pytest.raises(TierFailure, match="3 logits but 2 classes"):
        bad.predict_one(np.ones(4))


def test_constructor_validates_and_does_not_run_the_model():
    probe = _ModeProbe()
    TorchTier("t", probe, preprocess=_stack)
    assert probe.seen == []
    with pytest.raises(ConfigError):
        TorchTier("t", lambda x: x, preprocess=_stack)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        TorchTier("t", nn.Linear(2, 2), preprocess=_stack, num_threads=0)


def test_swap_module_changes_weights_and_version_together():
    tier = TorchTier("t", _linear(1.0), preprocess=_stack, postprocess=_first_logit, version="v1")
    assert tier.predict_one(np.ones(4)).output == pytest.approx(4.0)
    tier.swap_module(_linear(2.0), "v2")
    p = tier.predict_one(np.ones(4))
    assert (p.output, p.tier_version, tier.version, tier.swaps) == (pytest.approx(8.0), "v2", "v2", 1)
    tier.swap_module({"weight": torch.full((3, 4), 3.0)}, "v3")  # a state dict for the same architecture
    assert tier.predict_one(np.ones(4)).output == pytest.approx(12.0)
    with pytest.raises(ConfigError, match="does not fit"):
        tier.swap_module({"weight": torch.zeros(3, 5)}, "v4")
    with pytest.raises(ConfigError):
        tier.swap_module("weights.pt", "v4")  # type: ignore[arg-type]
    assert tier.version == "v3"  # a refused swap leaves the serving pair alone


def _first_logit(out):
    return [RawOutput(float(row[0])) for row in out]


def test_a_swap_during_a_request_does_not_tear_it():
    # The swap lands while the request is being preprocessed: the request must finish on the pair it started with.
    swapped = []

    def preprocess(batch):
        if not swapped:
            swapped.append(True)
            tier.swap_module(_linear(5.0), "5")
        return _stack(batch)

    tier = TorchTier("t", _linear(1.0), preprocess=preprocess, postprocess=_first_logit, version="1")
    first = tier.predict([np.ones(4)] * 3)
    assert [(p.tier_version, p.output) for p in first] == [("1", pytest.approx(4.0))] * 3
    assert tier.predict_one(np.ones(4)).tier_version == "5"
    assert tier.predict_one(np.ones(4)).output == pytest.approx(20.0)


def test_a_request_is_served_entirely_by_one_version_under_concurrent_swaps():
    # Every weight of version k is k, so an output tells which weights served; it must match the stamped version
    # for every item of every batch while another thread swaps versions as fast as it can.
    tier = TorchTier("t", _linear(1.0), preprocess=_stack, postprocess=_first_logit, version="1")
    stop = threading.Event()
    errors: list[str] = []

    def swapper() -> None:
        k = 1
        while not stop.is_set():
            k = k % 9 + 1
            tier.swap_module(_linear(float(k)), str(k))

    thread = threading.Thread(target=swapper)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible, so a torn read would show
    thread.start()
    try:
        batch = [np.ones(4)] * 16
        for _ in range(400):
            predictions = tier.predict(batch)
            versions = {p.tier_version for p in predictions}
            values = {round(p.output / 4.0) for p in predictions}
            if len(versions) != 1 or values != {int(next(iter(versions)))}:
                errors.append(f"versions {versions} served values {values}")
    finally:
        stop.set()
        thread.join()
        sys.setswitchinterval(interval)
    assert tier.swaps > 10  # the swaps really interleaved with the requests
    assert errors == []


def test_set_version_keeps_the_weights():
    tier = TorchTier("t", _linear(2.0), preprocess=_stack, postprocess=_first_logit)
    tier.set_version("9")
    p = tier.predict_one(np.ones(4))
    assert (p.tier_version, p.output) == ("9", pytest.approx(8.0))


def test_num_threads_applies_to_the_serving_thread_only():
    tier = TorchTier("t", _linear(1.0), preprocess=_stack, num_threads=1)
    seen: list[int] = []

    def serve() -> None:
        torch.set_num_threads(2)
        tier.predict_one(np.ones(4))
        seen.append(torch.get_num_threads())

    thread = threading.Thread(target=serve)
    thread.start()
    thread.join()
    assert seen == [1]
    assert tier.describe()["parameters"] == 12
