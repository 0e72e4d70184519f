"""The demo's parts: shipped data, feature extraction against scikit-learn, the model cache, the tiers.

Oracles: our request-time TF-IDF and char_wb analyzers must reproduce scikit-learn's fitted vectorizers exactly;
trained tiers must round-trip through the cache (JSON + npz, no pickle) with identical outputs; quality claims use
the real shipped BANKING77 data and the bundled digits.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from importlib import resources

import numpy as np
import pytest

from tierswitch.demo.data import load_banking77, load_digits_split
from tierswitch.demo.models import model_from_bundle
from tierswitch.demo.store import ModelStore, bundle_key, default_cache_dir
from tierswitch.demo.textfeat import HashedText, TfidfSpace, char_wb_ngrams, word_ngrams, word_tokens
from tierswitch.demo.tiers import PRICE_TABLE, ModelTier, price_for
from tierswitch.demo.training import DIGITS_BASE, DIGITS_FULL, TEXT_BASE, get_model
from tierswitch.errors import ConfigError


@pytest.fixture(scope="module")
def banking():
    return load_banking77()


def test_banking77_ships_inside_the_package_with_licence_and_attribution(banking):
    root = resources.files("tierswitch").joinpath("data", "banking77")
    assert "Attribution 4.0 International" in root.joinpath("LICENSE").read_text(encoding="utf-8")
    assert "CC BY 4.0" in root.joinpath("README.md").read_text(encoding="utf-8")
    assert root.joinpath("train.csv.gz").read_bytes()[:2] == b"\x1f\x8b"  # compressed
    assert (len(banking.train_x), len(banking.test_x), len(banking.classes)) == (10003, 3080, 77)
    assert set(np.unique(banking.train_y)) == set(range(77)) == set(np.unique(banking.test_y))
    assert not set(banking.train_x) & set(banking.test_x)  # the scored split shares no text with the train split


def test_importing_the_demo_package_loads_nothing_heavy():
    code = "import sys, tierswitch.demo; print([m for m in ('torch', 'sklearn', 'matplotlib') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("text", ["I  am still\twaiting on my card?", "a b cd", "Où est ma carte ?", "x", "  ", "é-é"])
def test_char_wb_and_word_analyzers_match_scikit_learn(text):
    from sklearn.feature_extraction.text import CountVectorizer

    chars = CountVectorizer(analyzer="char_wb", ngram_range=(2, 5)).build_analyzer()
    words = CountVectorizer(ngram_range=(1, 3)).build_analyzer()
    assert char_wb_ngrams(text, 2, 5) == chars(text)
    assert word_ngrams(word_tokens(text), 3) == words(text)


def test_tfidf_space_reproduces_fitted_vectorizers_on_real_text(banking):
    from sklearn.feature_extraction.text import TfidfVectorizer

    for vec, analyzer in (
        (TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True), ("word", 2)),
        (TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2), ("char_wb", 2, 5)),
    ):
        vec.fit(banking.train_x[::4])
        space = TfidfSpace(analyzer, vec.vocabulary_, vec.idf_)
        ours, theirs = space.transform(banking.test_x[:400]), vec.transform(banking.test_x[:400])
        assert abs(ours - theirs).max() < 1e-12


def test_hashed_text_is_stable_across_processes_and_normalised():
    h = HashedText(2048, words=2, chars=(3, 4), sublinear=True)
    vec = h.dense_one("How do I top up my card?")
    assert vec.dtype == np.float32 and vec.shape == (2048,)
    assert np.isclose(np.linalg.norm(vec), 1.0)
    code = (
        "from tierswitch.demo.textfeat import HashedText; import numpy as np;"
        "v = HashedText(2048, words=2, chars=(3, 4), sublinear=True).dense_one('How do I top up my card?');"
        "print(','.join(map(str, np.flatnonzero(v))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ",".join(map(str, np.flatnonzero(vec)))  # crc32, not Python's salted hash()


def test_cache_dir_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv("TIERSWITCH_CACHE_DIR", str(tmp_path / "explicit"))
    assert default_cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv("TIERSWITCH_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "tierswitch"


def test_trained_tier_round_trips_through_the_cache_without_pickle(tmp_path, banking):
    store = ModelStore(tmp_path)
    small = dataclasses.replace(banking, train_x=banking.train_x[::5], train_y=banking.train_y[::5],
                                fingerprint=banking.fingerprint + "-every-5th")
    params = {**TEXT_BASE, "C": 0.5}
    first = get_model(store, "t-base", small, params)
    assert not first.cached and first.train_inputs == len(small.train_x)
    again = get_model(store, "t-base", small, params)
    assert again.cached and again.key == first.key
    xs = banking.test_x[:200]
    np.testing.assert_allclose(again.model.proba(xs), first.model.proba(xs), rtol=1e-6)
    folder = store.path("t-base", first.key)
    assert sorted(p.name for p in folder.iterdir()) == ["arrays.npz", "meta.json"]
    with np.load(folder / "arrays.npz", allow_pickle=False) as npz:  # loads without pickle
        assert all(npz[k].dtype.kind in "fiu" for k in npz.files)
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no half-written temp dirs
    # a changed hyperparameter is a different key: the stale bundle is not reused
    assert bundle_key(small.fingerprint, {**params, "C": 0.25}) != first.key
    assert bundle_key(banking.fingerprint, params) != first.key  # and so is different data
    # a corrupt bundle is treated as absent (retrained), never half-loaded
    (folder / "meta.json").write_text("{not json", encoding="utf-8")
    assert store.load("t-base", first.key) is None
    rebuilt = get_model(store, "t-base", small, params)
    assert not rebuilt.cached
    assert json.loads((folder / "meta.json").read_text())["key"] == first.key


def test_text_base_is_cheap_and_noticeably_weaker_than_full(demo_cache, banking):
    store = ModelStore(demo_cache)
    base = get_model(store, "banking77-base", banking, TEXT_BASE)
    from tierswitch.demo.training import TEXT_FULL

    full = get_model(store, "banking77-full", banking, TEXT_FULL)
    acc_base = np.mean(base.model.proba(banking.test_x).argmax(1) == banking.test_y)
    acc_full = np.mean(full.model.proba(banking.test_x).argmax(1) == banking.test_y)
    assert 0.78 <= acc_base <= 0.86
    assert acc_full >= 0.90
    assert full.model.nbytes() > 10 * base.model.nbytes()
    one = model_from_bundle(*store.load("banking77-full", full.key)).proba_one(banking.test_x[0])
    np.testing.assert_allclose(one, full.model.proba(banking.test_x[:1])[0], rtol=1e-6)


def test_digit_tiers_and_model_tier(demo_cache):
    data = load_digits_split()
    store = ModelStore(demo_cache)
    base = get_model(store, "digits-base", data, DIGITS_BASE).model
    full = get_model(store, "digits-full", data, DIGITS_FULL).model
    acc_base = np.mean(base.proba(data.test_x).argmax(1) == data.test_y)
    acc_full = np.mean(full.proba(data.test_x).argmax(1) == data.test_y)
    assert acc_full >= 0.95 and acc_full - acc_base >= 0.05
    tier = ModelTier("full", full, data.classes, cost=price_for("full", "table"))
    one = tier.predict_one(data.test_x[0])
    many = tier.predict(data.test_x[:3])
    assert one.output == many[0].output and one.cost == PRICE_TABLE["full"]
    assert np.isclose(one.probs.sum(), 1.0) and one.confidence == one.probs.max()


def test_price_sources_are_validated():
    assert price_for("distilled", "table") == PRICE_TABLE["distilled"]
    assert price_for("full", "measured", {"full": 81.234}) == 81.23
    with pytest.raises(ConfigError, match="demo.costs"):
        price_for("full", "guessed")
    with pytest.raises(ConfigError, match="no measured latency"):
        price_for("full", "measured", {})
