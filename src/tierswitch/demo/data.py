"""The demo's real data: BANKING77 (shipped inside the package) and scikit-learn's bundled digits.

Nothing is downloaded. BANKING77 is read with ``importlib.resources`` from ``tierswitch/data/banking77`` (gzip CSVs,
CC BY 4.0, see the LICENSE and README there), so it works from an installed wheel as well as from a checkout.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

import numpy as np

from tierswitch.errors import ConfigError

__all__ = ["BANKING77_ATTRIBUTION", "LabelledData", "load_banking77", "load_digits_split"]

BANKING77_ATTRIBUTION = (
    'BANKING77 by PolyAI (Casanueva et al., 2020, "Efficient Intent Detection with Dual Sentence Encoders"), '
    "CC BY 4.0; shipped unchanged (gzip) in tierswitch/data/banking77"
)


@dataclass(frozen=True)
class LabelledData:
    """Inputs with integer labels; ``classes[label]`` is the label's name. ``fingerprint`` identifies the exact
    content (a hash over every input and label), so trained models can be cached against it."""

    train_x: list[Any]
    train_y: np.ndarray
    test_x: list[Any]
    test_y: np.ndarray
    classes: tuple[str, ...]
    fingerprint: str


def _banking_root() -> Traversable:
    return resources.files("tierswitch").joinpath("data", "banking77")


def _read_csv_gz(name: str) -> list[tuple[str, str]]:
    raw = _banking_root().joinpath(name).read_bytes()
    with gzip.open(io.BytesIO(raw), "rt", encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        return [(row["text"], row["category"]) for row in reader]


def load_banking77() -> LabelledData:
    """BANKING77's official train (10,003) and test (3,080) splits with labels as indices into the 77 intents."""
    try:
        classes = tuple(json.loads(_banking_root().joinpath("categories.json").read_text(encoding="utf-8")))
        train = _read_csv_gz("train.csv.gz")
        test = _read_csv_gz("test.csv.gz")
    except (FileNotFoundError, OSError) as exc:
        raise ConfigError(
            "demo.data", f"the shipped BANKING77 data is missing ({exc}); reinstall tierswitch"
        ) from exc
    index = {name: i for i, name in enumerate(classes)}
    h = hashlib.blake2b(digest_size=12)
    for text, cat in train + test:
        h.update(text.encode() + b"\x00" + cat.encode() + b"\x01")
    return LabelledData(
        [t for t, _ in train],
        np.array([index[c] for _, c in train], dtype=np.int64),
        [t for t, _ in test],
        np.array([index[c] for _, c in test], dtype=np.int64),
        classes,
        h.hexdigest(),
    )


def load_digits_split(test_share: float = 0.33, seed: int = 0) -> LabelledData:
    """scikit-learn's bundled 8x8 digits (1,797 images, values 0..16) as float32 arrays, split by a seeded
    stratified shuffle."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = digits.images.astype(np.float32)
    idx = np.arange(len(images))
    train_idx, test_idx = train_test_split(
        idx, test_size=test_share, random_state=seed, stratify=digits.target
    )
    h = hashlib.blake2b(images.tobytes() + digits.target.astype(np.int64).tobytes(), digest_size=12)
    h.update(train_idx.astype(np.int64).tobytes())
    return LabelledData(
        [images[i] for i in train_idx],
        digits.target[train_idx].astype(np.int64),
        [images[i] for i in test_idx],
        digits.target[test_idx].astype(np.int64),
        tuple(str(d) for d in range(10)),
        h.hexdigest(),
    )
