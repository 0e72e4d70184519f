"""Features, modality detection, digests and the complexity score."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from tierswitch.digest import digest_of
from tierswitch.errors import ConfigError, EmptyInput, NonFiniteInput, UnsupportedInput
from tierswitch.estimator import ComplexityEstimator, detect_modality, extract_features, uncertainty_of
from tierswitch.types import Prediction


@pytest.mark.parametrize(
    "x, modality",
    [("hi", "text"), ([{"role": "user", "content": "hi"}], "text"), (np.zeros((8, 8)), "image"),
     (np.zeros((4, 4, 3)), "image"), (np.zeros(5), "tabular"), ([1.0, 2.0], "tabular"),
     ({"text": "a", "image": np.zeros((2, 2))}, "multimodal"), ({"text": "only"}, "text")],
)
def test_modality_detection(x, modality):
    assert detect_modality(x) == modality


@pytest.mark.parametrize("bad, error", [(None, EmptyInput), ("", EmptyInput), (b"\xff\xfe", UnsupportedInput),
                                        (object(), UnsupportedInput), ({"audio": 1}, UnsupportedInput),
                                        ({"text": "hi", "tabular": 5}, UnsupportedInput),
                                        ({"text": "hi", "image": [[1, 2], [3]]}, UnsupportedInput)])
def test_bad_inputs_get_named_errors(bad, error):
    with pytest.raises(error):
        extract_features(bad)


def test_length_features_per_modality():
    text = extract_features("x" * 200)
    assert (text.chars, text.tokens, text.length) == (200, 50, 50)
    image = extract_features(np.zeros((28, 28)))
    assert image.pixels == 784 and image.length == 784
    multi = extract_features({"text": "abcd" * 3, "image": np.zeros((4, 4))})
    assert multi.modality == "multimodal" and multi.length == 3 + 16
    chat = extract_features([{"role": "user", "content": "abcd"}, {"role": "assistant", "content": "efgh"}])
    assert chat.turns == 2 and chat.chars == 9
    assert extract_features([1.0, 2.0, 3.0], modality="tabular").elements == 3


def test_digest_is_stable_across_processes_and_hashes_conversations_whole():
    conversation = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
                    {"role": "user", "content": "and?"}]
    code = ("from tierswitch.digest import digest_of; import numpy as np; "
            f"print(digest_of({conversation!r})); print(digest_of(np.arange(6, dtype=np.float32).reshape(2, 3)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == [digest_of(conversation), digest_of(np.arange(6, dtype=np.float32).reshape(2, 3))]
    assert digest_of(conversation) != digest_of(conversation[-1:])
    assert digest_of(conversation) != digest_of([conversation[0], conversation[2]])
    assert digest_of("1") != digest_of(1) != digest_of(1.0)
    assert digest_of(np.zeros(4, np.float32)) != digest_of(np.zeros(4, np.float64))
    assert digest_of({"a": 1, "b": 2}) == digest_of({"b": 2, "a": 1})


def test_a_str_subclass_digests_like_the_plain_string_and_never_like_another_text():
    # numpy.str_ (what indexing a string array gives) is a str subclass: it must share the plain string's cache
    # entry, and must not share one with a different text that starts with its length bytes
    assert digest_of(np.str_("hello")) == digest_of("hello")
    crafted = (5).to_bytes(8, "little").decode("latin-1") + "hello"
    assert digest_of(crafted) != digest_of(np.str_("hello"))


def test_digest_refuses_nan_and_unknown_objects():
    with pytest.raises(NonFiniteInput):
        digest_of(np.array([1.0, np.nan]))
    with pytest.raises(UnsupportedInput):
        digest_of({1, 2})


def test_score_is_in_unit_interval_and_grows_with_length_and_uncertainty():
    estimator = ComplexityEstimator()
    short, long = estimator.score_one("hi"), estimator.score_one("word " * 1000)
    assert 0.0 <= short < long <= 1.0
    confident = Prediction("a", "base", "1", 0.0, 0.0, np.array([0.95, 0.05]))
    unsure = Prediction("a", "base", "1", 0.0, 0.0, np.array([0.5, 0.5]))
    assert estimator.score_one("hi", probe=confident) < estimator.score_one("hi", probe=unsure)
    scores = estimator.score_many(["a", "b" * 50, "c" * 5000])
    assert scores.shape == (3,) and np.all(np.diff(scores) > 0)


def test_uncertainty_kinds():
    p = Prediction("a", "t", "1", 0.0, 0.0, np.array([0.7, 0.2, 0.1]))
    assert uncertainty_of(p, "confidence") == pytest.approx(0.3)
    assert uncertainty_of(p, "margin") == pytest.approx(0.5)
    entropy = -(0.7 * np.log(0.7) + 0.2 * np.log(0.2) + 0.1 * np.log(0.1)) / np.log(3)
    assert uncertainty_of(p, "entropy") == pytest.approx(entropy)
    assert uncertainty_of(Prediction("a", "t", "1", 0.0, 0.0, None, 0.8)) == pytest.approx(0.2)
    assert uncertainty_of(Prediction("a", "t", "1", 0.0, 0.0)) is None
    unnormalised = Prediction("a", "t", "1", 0.0, 0.0, np.array([1.5, 0.0]))  # a tier's scores, not probabilities
    assert 0.0 <= uncertainty_of(unnormalised, "entropy") <= 1.0
    with pytest.raises(ConfigError, match="estimator.uncertainty"):
        uncertainty_of(p, "variance")


def test_modality_prior_weights_multimodal_inputs():
    estimator = ComplexityEstimator(length_weight=0.0, modality_weight=1.0)
    assert estimator.score_one({"text": "a", "image": np.zeros((2, 2))}) == pytest.approx(0.5)
    with pytest.raises(ConfigError) as info:
        ComplexityEstimator(length_scale=0)
    assert info.value.field == "estimator.length_scale"
    with pytest.raises(ConfigError) as info:
        ComplexityEstimator(modality_prior={"image": "high"})  # was a bare TypeError from comparing str with float
    assert info.value.field == "estimator.modality_prior.image"
