"""The demo's workloads: which tiers serve which modality, and the stream of traffic that goes through them.

A workload is one or more ``Family`` objects (a base, a distilled and a full tier for one modality) and a stream.
The stream has two phases, and nothing crosses them:
- ``learn``: the train split arrives as unlabelled traffic; the full tier's answers to it train the student;
- ``score``: the test split (never trained on by any tier) is answered and scored against its labels; the
  student stops learning before it starts.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tierswitch.demo.data import LabelledData, load_banking77, load_digits_split
from tierswitch.demo.store import ModelStore
from tierswitch.demo.training import DIGITS_BASE, DIGITS_FULL, TEXT_BASE, TEXT_FULL, TrainedModel, get_model
from tierswitch.distill.features import DenseFeatures, HashedTextFeatures
from tierswitch.distill.spec import StudentSpec
from tierswitch.errors import ConfigError

__all__ = ["WORKLOADS", "Family", "StreamItem", "Workload", "build_workload"]

WORKLOADS = ("text", "digits", "mixed")
ROLES = ("base", "distilled", "full")

# The student's own input pipeline is part of its spec: the library's text default (hashed word 1-2-grams and
# char 2-4-grams, sparse) for text, the 8x8 image scaled to [0, 1] for digits.
DIGITS_FEATURES = DenseFeatures(64, scale=1.0 / 16.0)


@dataclass
class Family:
    """The three tiers of one modality. ``names`` maps role -> tier name in the router; ``thresholds`` maps role ->
    the cascade's confidence threshold (the full tier has none: it always answers). ``distill`` sizes the student's
    training to the stream: a short stream needs smaller batches and an earlier gate than a long one."""

    modality: str
    data: LabelledData
    base: TrainedModel
    full: TrainedModel
    student_spec: StudentSpec
    thresholds: dict[str, float]
    names: dict[str, str]
    describe: dict[str, str] = field(default_factory=dict)

    @property
    def student_input(self) -> Callable[[Any], Any]:
        """The student's featuriser (from its spec)."""
        feats = self.student_spec.features
        assert feats is not None
        return feats.dense_one if isinstance(feats, DenseFeatures) else feats.sparse_one

    def tier_name(self, role: str) -> str:
        return self.names[role]


@dataclass(frozen=True, slots=True)
class StreamItem:
    """One request of the stream: ``truth`` is the label's name (never shown to the router or the student);
    ``repeat`` marks a request that re-asks an earlier input of the same phase (what the result cache is for)."""

    payload: Any
    modality: str
    truth: str
    phase: str  # "learn" or "score"
    family: int
    repeat: bool = False


@dataclass
class Workload:
    name: str
    families: list[Family]
    items: list[StreamItem]

    @property
    def learn_count(self) -> int:
        return sum(1 for it in self.items if it.phase == "learn")


def _text_family(store: ModelStore, suffix: str) -> Family:
    data = load_banking77()
    spec = StudentSpec.for_text(data.classes)
    feats = spec.features
    assert isinstance(feats, HashedTextFeatures)
    return Family(
        "text", data, get_model(store, "banking77-base", data, TEXT_BASE),
        get_model(store, "banking77-full", data, TEXT_FULL), spec,
        {"base": 0.5, "distilled": 0.55}, {r: f"{r}{suffix}" for r in ROLES},
        {
            "base": f"hashed word unigrams ({TEXT_BASE['dim']} buckets) + logistic regression",
            "full": "word 1-2-gram and char 2-5-gram TF-IDF, one logistic regression each, probabilities averaged",
            "distilled": f"MLP {feats.dim}->{spec.hidden[0]}->{spec.n_classes} on hashed word 1-{feats.words}-grams "
                         f"+ char {_span(feats.chars)}-grams (sparse; the library's text default), "
                         "untrained at start, trained online in a worker process, served in numpy",
        },
    )


def _digits_family(store: ModelStore, suffix: str) -> Family:
    data = load_digits_split()  # a fixed split: the seed varies the traffic, not what the tiers learned
    return Family(
        "image", data, get_model(store, "digits-base", data, DIGITS_BASE),
        get_model(store, "digits-full", data, DIGITS_FULL),
        StudentSpec(64, (64,), len(data.classes), tuple(data.classes), DIGITS_FEATURES),
        {"base": 0.7, "distilled": 0.8}, {r: f"{r}{suffix}" for r in ROLES},
        {
            "base": "2x2-pooled 4x4 image + logistic regression",
            "full": "MLP 64->256->10 on the 8x8 image (scikit-learn, served in numpy)",
            "distilled": "MLP 64->64->10, untrained at start, trained online in a worker process, served in numpy",
        },
    )


def _phase_items(families: Sequence[Family], phase: str, rng: random.Random) -> list[StreamItem]:
    items = []
    for i, fam in enumerate(families):
        xs, ys = (fam.data.train_x, fam.data.train_y) if phase == "learn" else (fam.data.test_x, fam.data.test_y)
        items += [StreamItem(x, fam.modality, fam.data.classes[int(y)], phase, i) for x, y in zip(xs, ys)]
    rng.shuffle(items)  # the splits are sorted by class; real traffic is not, and mixed traffic interleaves
    return items


def _with_repeats(items: list[StreamItem], share: float, rng: random.Random, recent: int = 500) -> list[StreamItem]:
    """After each request, with probability ``share``, someone re-asks one of the ``recent`` previous inputs."""
    out: list[StreamItem] = []
    for item in items:
        out.append(item)
        if share > 0 and rng.random() < share:
            out.append(dataclasses.replace(rng.choice(out[-recent:]), repeat=True))
    return out


def build_workload(name: str, store: ModelStore, *, seed: int = 0, limit: int | None = None,
                   repeats: float = 0.0) -> Workload:
    """Train (or load) the tiers of workload ``name`` and lay out its stream: each split once in a seeded order,
    plus a ``repeats`` share of re-asked inputs (within the same phase); ``limit`` caps the stream's length,
    keeping the learn/score proportions."""
    if not 0.0 <= repeats <= 0.5:
        raise ConfigError("demo.repeats", f"must be a share in [0, 0.5], got {repeats!r}")
    if name == "text":
        families = [_text_family(store, "")]
    elif name == "digits":
        families = [_digits_family(store, "")]
    elif name == "mixed":
        families = [_text_family(store, "-text"), _digits_family(store, "-image")]
    else:
        raise ConfigError("demo.workload", f"must be one of {list(WORKLOADS)}, got {name!r}")
    rng = random.Random(seed)
    learn = _with_repeats(_phase_items(families, "learn", rng), repeats, rng)
    score = _with_repeats(_phase_items(families, "score", rng), repeats, rng)
    if limit is not None:
        if limit < 20:
            raise ConfigError("demo.limit", f"must be at least 20 requests, got {limit}")
        n_learn = min(len(learn), round(limit * len(learn) / (len(learn) + len(score))))
        learn, score = learn[:n_learn], score[: min(len(score), limit - n_learn)]
    return Workload(name, families, learn + score)


def _span(chars: tuple[int, int] | None) -> str:
    return "no" if chars is None else f"{chars[0]}-{chars[1]}"
