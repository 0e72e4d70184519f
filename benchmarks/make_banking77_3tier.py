"""Build a real 3-tier replay table from BANKING77: three local intent classifiers of growing strength and cost.

Tiers (all scikit-learn, seeded, trained on parts of ``train.csv`` only; the table holds their outcomes on every row
of ``test.csv``, 3,080 rows, so a router trained on <= 1,500 of them is evaluated on the rest):

- ``small``: multinomial naive Bayes on counts of the 300 most frequent words, trained on 1,500 training rows;
- ``mid``:   logistic regression (C=5) on sublinear TF-IDF word 1-2-grams, trained on 4,000 training rows;
- ``large``: logistic regression (C=20) on TF-IDF word 1-2-grams + character 2-5-grams, all 10,003 training rows.

Costs are per query, priced like LLM calls: ``price_per_1k_tokens * (ceil(chars / 4) + 8) / 1000`` with prices
0.1 (small), 1.0 (mid), 10.0 (large) — so longer queries cost more and the three tiers differ 10x each.

    PYTHONPATH=src python benchmarks/make_banking77_3tier.py  # writes benchmarks/data/banking77_3tier.csv

Data: PolyAI BANKING77 (Casanueva et al., 2020), CC BY 4.0 (../shared/data/banking77/LICENSE).
"""

from __future__ import annotations

import csv
import math
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / ".." / "shared" / "data" / "banking77"
PRICES = {"small": 0.1, "mid": 1.0, "large": 10.0}


def _load(name: str) -> tuple[list[str], np.ndarray]:
    with open(DATA / name, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [r["text"] for r in rows], np.array([r["category"] for r in rows])


def build(out: Path = HERE / "data" / "banking77_3tier.csv", seed: int = 0) -> Path:
    from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.naive_bayes import MultinomialNB
    from sklearn.pipeline import make_pipeline, make_union

    xtr, ytr = _load("train.csv")
    xte, yte = _load("test.csv")
    order = np.random.default_rng(seed).permutation(len(xtr))
    pick = lambda n: ([xtr[i] for i in order[:n]], ytr[order[:n]])  # noqa: E731
    models = {
        "small": make_pipeline(CountVectorizer(max_features=300), MultinomialNB()).fit(*pick(1500)),
        "mid": make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
                             LogisticRegression(C=5.0, max_iter=2000)).fit(*pick(4000)),
        "large": make_pipeline(
            make_union(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
                       TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2)),
            LogisticRegression(C=20.0, max_iter=3000)).fit(xtr, ytr),
    }
    right = {name: m.predict(xte) == yte for name, m in models.items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "text", "category", *(f"{t}_correct" for t in PRICES), *(f"{t}_cost" for t in PRICES)])
        for i, text in enumerate(xte):
            tokens = math.ceil(len(text) / 4) + 8
            w.writerow([i, text, yte[i], *(bool(right[t][i]) for t in PRICES),
                        *(f"{PRICES[t] * tokens / 1000:.8f}" for t in PRICES)])
    print({t: round(float(r.mean()), 4) for t, r in right.items()}, file=sys.stderr)
    return out


if __name__ == "__main__":
    print(build())
