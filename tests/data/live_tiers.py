"""Real tiers for the live benchmark tests: two scikit-learn intent classifiers trained on BANKING77 (CC BY 4.0,
PolyAI), read from ../shared/data/banking77 beside the project. Loaded by ``tierswitch bench live`` through
``factory: tests/data/live_tiers.py:make_base``; each factory trains its model when called."""

from __future__ import annotations

import csv
import random
from pathlib import Path

BANKING = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "banking77"


def _train_rows(n: int) -> tuple[list[str], list[str]]:
    with open(BANKING / "train.csv", encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    random.Random(0).shuffle(rows)  # the file is sorted by intent
    return [r["text"] for r in rows[:n]], [r["category"] for r in rows[:n]]


def make_base():
    """A cheap tier: multinomial naive Bayes on word counts, 1,500 training rows (returns a ``SklearnTier``)."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.naive_bayes import MultinomialNB
    from sklearn.pipeline import make_pipeline

    from tierswitch.tiers import SklearnTier

    x, y = _train_rows(1500)
    return SklearnTier("base", make_pipeline(CountVectorizer(), MultinomialNB()).fit(x, y), cost=1.0)


def make_full():
    """A stronger tier: logistic-loss SGD on TF-IDF word 1-2-grams, 4,000 rows (returns a plain function that
    gives ``(label, probabilities)``, so the live config wraps it and prices it)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import SGDClassifier
    from sklearn.pipeline import make_pipeline

    x, y = _train_rows(4000)
    model = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
                          SGDClassifier(loss="log_loss", alpha=1e-5, random_state=0)).fit(x, y)

    def predict(text: str):
        probs = model.predict_proba([text])[0]
        return model.classes_[probs.argmax()], probs

    predict.model = model  # lets the benchmark report the model's size
    return predict
