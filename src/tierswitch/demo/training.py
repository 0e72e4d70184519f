"""Train the demo's base and full tiers with scikit-learn, once; later runs load them from the cache directory.

What trains what: the text tiers learn from BANKING77's train split (10,003 labelled texts), the digit tiers from
the digits train split; test splits never train anything. The student (``distilled``) is not trained here: it
starts untrained and learns online from the full tier's answers during the stream.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from tierswitch.demo.data import LabelledData
from tierswitch.demo.models import (
    DemoModel,
    LinearHead,
    MLPModel,
    PooledLinear,
    TextLinear,
    TfidfEnsemble,
    model_from_bundle,
    pool_image,
)
from tierswitch.demo.store import ModelStore, bundle_key
from tierswitch.demo.textfeat import HashedText, TfidfSpace

__all__ = ["DIGITS_BASE", "DIGITS_FULL", "TEXT_BASE", "TEXT_FULL", "TrainedModel", "get_model"]

# Hyperparameters are part of each bundle's cache key: edit one and the next run retrains that model.
TEXT_BASE: dict[str, Any] = {"model": "text_linear", "dim": 1024, "words": 1, "C": 1.0}
TEXT_FULL: dict[str, Any] = {"model": "tfidf_ensemble", "word_ngrams": 2, "char_ngrams": [2, 5], "char_min_df": 2,
                             "C": 20.0, "tol": 1e-3}
DIGITS_BASE: dict[str, Any] = {"model": "pooled_linear", "pool": 2, "C": 1.0}
DIGITS_FULL: dict[str, Any] = {"model": "mlp", "hidden": [256], "alpha": 1e-3, "max_iter": 300, "seed": 0}


@dataclass
class TrainedModel:
    """A model ready to serve, with where it came from: ``cached`` (loaded, not trained), ``train_s`` (the
    training time, measured when it was trained), ``train_inputs`` (how many labelled inputs trained it)."""

    name: str
    model: DemoModel
    key: str
    cached: bool
    train_s: float
    train_inputs: int
    disk_bytes: int
    params: dict[str, Any]


def _logreg(x: Any, y: np.ndarray, C: float, tol: float = 1e-4) -> Any:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # a loose tol is deliberate: minutes matter here
        return LogisticRegression(C=C, tol=tol, max_iter=300).fit(x, y)


def _train_text_base(data: LabelledData, p: Mapping[str, Any]) -> DemoModel:
    features = HashedText(int(p["dim"]), words=int(p["words"]))
    lr = _logreg(features.transform(data.train_x), data.train_y, float(p["C"]))
    return TextLinear(features, LinearHead.from_sklearn(lr))


def _train_text_full(data: LabelledData, p: Mapping[str, Any]) -> DemoModel:
    from sklearn.feature_extraction.text import TfidfVectorizer

    lo, hi = p["char_ngrams"]
    specs = [
        (TfidfVectorizer(ngram_range=(1, int(p["word_ngrams"])), sublinear_tf=True), ("word", int(p["word_ngrams"]))),
        (TfidfVectorizer(analyzer="char_wb", ngram_range=(lo, hi), sublinear_tf=True, min_df=int(p["char_min_df"])),
         ("char_wb", lo, hi)),
    ]
    members = []
    for vectorizer, analyzer in specs:
        x = vectorizer.fit_transform(data.train_x)
        lr = _logreg(x, data.train_y, float(p["C"]), float(p["tol"]))
        space = TfidfSpace(analyzer, {k: int(v) for k, v in vectorizer.vocabulary_.items()}, vectorizer.idf_)
        members.append((space, LinearHead.from_sklearn(lr)))
    return TfidfEnsemble(members)


def _train_digits_base(data: LabelledData, p: Mapping[str, Any]) -> DemoModel:
    k = int(p["pool"])
    lr = _logreg(np.stack([pool_image(x, k) for x in data.train_x]), data.train_y, float(p["C"]))
    return PooledLinear(k, LinearHead.from_sklearn(lr))


def _train_digits_full(data: LabelledData, p: Mapping[str, Any]) -> DemoModel:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    x = np.stack([np.asarray(i, np.float32).reshape(-1) for i in data.train_x]) / 16.0
    mlp = MLPClassifier(hidden_layer_sizes=tuple(p["hidden"]), alpha=float(p["alpha"]), max_iter=int(p["max_iter"]),
                        random_state=int(p["seed"]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        mlp.fit(x, data.train_y)
    return MLPModel.from_sklearn(mlp)


TRAINERS: dict[str, Callable[[LabelledData, Mapping[str, Any]], DemoModel]] = {
    "text_linear": _train_text_base,
    "tfidf_ensemble": _train_text_full,
    "pooled_linear": _train_digits_base,
    "mlp": _train_digits_full,
}


def get_model(store: ModelStore, name: str, data: LabelledData, params: Mapping[str, Any]) -> TrainedModel:
    """Load ``name`` trained with ``params`` on ``data`` from ``store``, or train and save it."""
    params = dict(params)
    key = bundle_key(data.fingerprint, params)
    found = store.load(name, key)
    if found is not None:
        meta, arrays = found
        return TrainedModel(name, model_from_bundle(meta, arrays), key, True, float(meta.get("train_s", 0.0)),
                            int(meta.get("train_inputs", 0)), store.size_bytes(name, key), params)
    from threadpoolctl import threadpool_limits  # ships with scikit-learn

    started = time.perf_counter()
    # One BLAS thread: on a small shared machine OpenBLAS's spinning worker threads make these small fits 10x slower.
    with threadpool_limits(limits=1, user_api="blas"):
        model = TRAINERS[params["model"]](data, params)
    train_s = time.perf_counter() - started
    meta, arrays = model.to_bundle()
    meta.update({"train_s": train_s, "train_inputs": len(data.train_x), "params": params})
    store.save(name, key, meta, arrays)
    return TrainedModel(name, model, key, False, train_s, len(data.train_x), store.size_bytes(name, key), params)
