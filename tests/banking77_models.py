"""BANKING77 (../shared/data/banking77 beside the project) and the two real intent classifiers the policy tests
route between: ``weak`` (naive Bayes over the 400 most frequent words) and ``strong`` (TF-IDF word 1-2-grams,
logistic-loss SGD, seeded). ``trained()`` fits both on the whole training set; conftest.py shares that as the
session fixture ``banking77`` so each test session trains them once.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "banking77"


def load(name: str) -> tuple[list[str], np.ndarray]:
    """Texts and intent labels of one split file (``train.csv`` or ``test.csv``)."""
    with open(DATA / name, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [r["text"] for r in rows], np.array([r["category"] for r in rows])


def train_weak(x: list[str], y: np.ndarray) -> Any:
    """The cheap model: multinomial naive Bayes on counts of the 400 most frequent words."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.naive_bayes import MultinomialNB
    from sklearn.pipeline import make_pipeline

    return make_pipeline(CountVectorizer(max_features=400), MultinomialNB()).fit(x, y)


def train_strong(x: list[str], y: np.ndarray) -> Any:
    """The expensive model: logistic-loss SGD on sublinear TF-IDF word 1-2-grams (random_state=0)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import SGDClassifier
    from sklearn.pipeline import make_pipeline

    return make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2),
        SGDClassifier(loss="log_loss", alpha=1e-5, max_iter=30, tol=None, random_state=0),
    ).fit(x, y)


@dataclass(frozen=True)
class Banking77:
    """The test split and both models fitted on the whole training split. Shared by several test modules: use
    the models for predictions only, never refit them."""

    x_test: list[str]
    y_test: np.ndarray
    weak: Any
    strong: Any


def trained() -> Banking77:
    """Load both splits and fit ``weak`` and ``strong`` on all 10,003 training questions."""
    x_train, y_train = load("train.csv")
    x_test, y_test = load("test.csv")
    return Banking77(x_test, y_test, train_weak(x_train, y_train), train_strong(x_train, y_train))
