"""``LearnedEstimator``: a ridge model fitted on logged per-tier outcomes, served as plain Python.

Features of a text (or the ``text`` part of a dict input): a few dense counts that track how many reasoning steps a
request needs (length, numbers, number words, sentences, decimals, fractions, percents, capitalised names,
comparisons, connectives ...) plus hashed word unigrams and bigrams (numbers reduced to their shape), L2-normalised.
Numeric fields of a dict input named in ``numeric`` are added as dense features.

The target is either per-tier outcomes ``y`` of shape ``(n, T)`` (tiers cheapest first; each column is correctness
in [0, 1]) or one column ``(n,)`` saying how much the expensive tier is needed. With per-tier outcomes one ridge
output per tier is learned and the score is ``0.5 + 0.5 * (p_full - p_cheapest)``: the expected gain of the full
tier over the cheapest one, mapped to [0, 1]. Regularisation (``alphas``) and the weight of the n-gram block against
the dense block (``ngram_weights``) are chosen by k-fold cross-validation on the data given to ``fit``.

At the end of ``fit`` the scikit-learn model is folded into numpy arrays and a dict of hashed n-gram weights, so
``score_one`` costs a regex pass and a few dict lookups (no sparse matrices, no ``predict`` overhead). Scores are
summed with ``math.fsum``, so they are bit-identical across processes: a threshold tuned on them is reproducible.
Saved as a directory holding ``estimator.json`` and ``weights.npz`` (loaded with ``allow_pickle=False``).
"""

from __future__ import annotations

import json
import math
import operator
import re
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tierswitch.errors import ConfigError, NotFittedError
from tierswitch.estimator.base import Estimator
from tierswitch.types import Features

__all__ = ["DENSE_FEATURES", "LearnedEstimator", "from_config", "text_of"]

FORMAT = "tierswitch.learned/1"
_TOKEN = re.compile(r"\d+(?:[.,/]\d+)*|[a-z]+(?:'[a-z]+)?|[^\sa-z\d]")
_CAPITALISED = re.compile(r"\b[A-Z][a-z]")
_NUMBER_WORDS = frozenset(
    "one two three four five six seven eight nine ten eleven twelve fifteen twenty thirty forty fifty hundred "
    "thousand million dozen half halves third thirds quarter quarters twice double triple thrice".split()
)
# word groups counted as dense features: (name, words)
_GROUPS: tuple[tuple[str, frozenset[str]], ...] = tuple(
    (name, frozenset(words.split()))
    for name, words in (
        ("time_units", "hour hours minute minutes second seconds day days week weeks month months year years"),
        ("comparisons", "more less fewer than times twice half"),
        ("rates", "each every per"),
        ("remainders", "remaining rest left"),
        ("ands", "and"),
        ("conditionals", "if"),
    )
)
DENSE_FEATURES: tuple[str, ...] = (
    "log_chars", "log_words", "log_numbers", "log_number_words", "log_all_numbers", "sentences", "decimals",
    "percents", "fractions", "dollars", "max_digits", "mean_word_length", "log_capitalised", "commas", "questions",
    "unique_word_ratio", "has_decimal", "has_percent", "has_fraction", "has_dollar",
) + tuple(name for name, _ in _GROUPS)
# token -> indices of the counters it bumps: . ? ! , % $ percent number-word, then one per word group
_COUNTS: dict[str, tuple[int, ...]] = {p: (i,) for i, p in enumerate(".?!,%$")}
for _word, _slot in [("percent", 6)] + [(w, 7) for w in _NUMBER_WORDS] + [
    (w, 8 + j) for j, (_, group) in enumerate(_GROUPS) for w in group
]:
    _COUNTS[_word] = _COUNTS.get(_word, ()) + (_slot,)
_DEFAULT_ALPHAS = (100.0, 300.0, 1000.0, 3000.0)
_DEFAULT_NGRAM_WEIGHTS = (0.0, 2.0, 4.0, 8.0)


def text_of(x: Any) -> str:
    """The text an input carries: a str, a conversation's turns joined, or a dict's ``text`` part ("" if none)."""
    if isinstance(x, str):
        return x
    if isinstance(x, Mapping):
        return text_of(x["text"]) if "text" in x else ""
    if isinstance(x, list) and x and all(isinstance(t, Mapping) and "content" in t for t in x):
        return "\n".join(str(t["content"]) for t in x)
    return ""


def _analyse(text: str) -> tuple[list[float], set[str]]:
    """Dense features and the set of word unigrams and bigrams (numbers reduced to their shape) in one pass."""
    tokens = _TOKEN.findall(text.lower())
    counts = [0] * (8 + len(_GROUPS))
    words: list[str] = []
    shaped: list[str] = []
    numbers = decimals = fractions = max_digits = 0
    lookup = _COUNTS.get
    for t in tokens:
        if t[0].isdigit():  # numbers become their shape, so "16 eggs" and "12 eggs" share n-grams
            numbers += 1
            max_digits = max(max_digits, len(t))
            if "." in t:
                decimals += 1
                shaped.append("0.0")
            elif "/" in t:
                fractions += 1
                shaped.append("0/0")
            else:
                shaped.append("0")
            continue
        shaped.append(t)
        slots = lookup(t)
        if slots is not None:
            for i in slots:
                counts[i] += 1
        if t[0].isalpha():
            words.append(t)
    n_words, number_words, percents = len(words), counts[7], counts[4] + counts[6]
    dense = [
        math.log1p(len(text)), math.log1p(n_words), math.log1p(numbers), math.log1p(number_words),
        math.log1p(numbers + number_words), float(counts[0] + counts[1] + counts[2]), float(decimals),
        float(percents), float(fractions), float(counts[5]), float(max_digits),
        sum(map(len, words)) / n_words if n_words else 0.0, math.log1p(len(_CAPITALISED.findall(text))),
        float(counts[3]), float(counts[1]), len(set(words)) / n_words if n_words else 0.0,
        float(decimals > 0), float(percents > 0), float(fractions > 0), float(counts[5] > 0),
    ]
    dense.extend(map(float, counts[8:]))
    grams = set(shaped)
    grams.update(map(" ".join, zip(shaped, shaped[1:])))
    return dense, grams


def _bucket(gram: str) -> int:
    # crc32 is stable across processes and machines (Python's hash() is salted per process); 32 bits keep
    # collisions negligible for the tens of thousands of n-grams a training set holds
    return zlib.crc32(gram.encode("utf-8", "surrogatepass"))


class LearnedEstimator(Estimator):
    """Complexity score learned from recorded outcomes; see the module docstring for features and target.

    Parameters are stored verbatim; learned state ends in ``_``. ``numeric`` names numeric fields of dict inputs
    used as extra features; ``cv_folds`` and ``seed`` drive the cross-validation that picks ``alpha`` from
    ``alphas`` and the n-gram block weight from ``ngram_weights`` (a single pair skips cross-validation).
    """

    def __init__(
        self,
        *,
        alphas: Sequence[float] = _DEFAULT_ALPHAS,
        ngram_weights: Sequence[float] = _DEFAULT_NGRAM_WEIGHTS,
        numeric: Sequence[str] = (),
        cv_folds: int = 5,
        seed: int = 0,
    ) -> None:
        self.alphas = _floats(alphas, "alphas")
        self.ngram_weights = _floats(ngram_weights, "ngram_weights")
        if isinstance(numeric, str) or not isinstance(numeric, Sequence):
            raise ConfigError("estimator.numeric", f"must be a list of field names, got {numeric!r}")
        self.numeric = tuple(numeric)
        self.cv_folds = cv_folds
        self.seed = seed
        self.path_: Path | None = None
        self._state: dict[str, Any] | None = None
        _validate(self)

    # -- features ---------------------------------------------------------------------------------------------
    def _row(self, x: Any) -> tuple[list[float], set[str]]:
        dense, grams = _analyse(text_of(x))
        if self.numeric:
            dense.extend(_numeric_value(x, name) for name in self.numeric)
        return dense, grams

    def feature_names(self) -> tuple[str, ...]:
        """Names of the dense features, in weight order."""
        return DENSE_FEATURES + tuple(f"numeric:{n}" for n in self.numeric)

    def design(self, xs: Sequence[Any]) -> tuple[np.ndarray, list[list[int]]]:
        """Dense feature matrix and, per row, the hashed bucket of each distinct n-gram (fit and benchmarks)."""
        dense, buckets = [], []
        for x in xs:
            d, grams = self._row(x)
            dense.append(d)
            buckets.append([_bucket(g) for g in grams])
        return np.asarray(dense, dtype=np.float64).reshape(len(dense), -1), buckets

    # -- fitting ----------------------------------------------------------------------------------------------
    def fit(self, xs: Sequence[Any], y: Any, tiers: Sequence[str] | None = None) -> LearnedEstimator:
        """Fit on inputs ``xs`` and outcomes ``y``: ``(n, T)`` per-tier correctness (cheapest tier first) or ``(n,)``
        need-for-the-expensive-tier in [0, 1]. ``tiers`` names the columns (kept for reports)."""
        self._state = _fit_ridge(self, list(xs), y, tiers)
        self.path_ = None
        return self

    @property
    def fitted(self) -> bool:
        return self._state is not None

    def fit_report(self) -> dict[str, Any]:
        """What fit chose and saw: alpha, n-gram weight, CV scores per grid point, rows, tiers."""
        return dict(self._require()["report"])

    def _require(self) -> dict[str, Any]:
        if self._state is None:
            raise NotFittedError("LearnedEstimator is not fitted; call fit(xs, y) or load a saved one")
        return self._state

    # -- scoring ----------------------------------------------------------------------------------------------
    def raw_outputs(self, x: Any) -> np.ndarray:
        """The model's per-output predictions for one input (per-tier correctness, or the need column)."""
        state = self._require()
        dense, grams = self._row(x)
        cols = [state["columns"].get(_bucket(g)) for g in grams]
        scale = 1.0 / math.sqrt(len(grams)) if grams else 0.0
        ngram = np.zeros(len(state["bias"]))
        for c in cols:
            if c is not None:
                ngram += state["bucket_w"][:, c]
        return state["bias"] + state["dense_w"] @ np.asarray(dense) + ngram * scale

    def score_text_row(self, x: Any) -> float:
        """The score of one input (the hot path: a regex pass, one C-level dict lookup per n-gram, a dot product)."""
        state = self._state
        if state is None:
            raise NotFittedError("LearnedEstimator is not fitted; call fit(xs, y) or load a saved one")
        dense, grams = self._row(x)
        try:
            hashes = map(zlib.crc32, map(str.encode, grams))
            ngram = math.fsum(filter(None, map(state["gain_buckets"].get, hashes)))
        except UnicodeEncodeError:  # lone surrogates: the slow path hashes them as fit did
            ngram = math.fsum(state["gain_buckets"].get(_bucket(g), 0.0) for g in grams)
        if grams:
            ngram /= math.sqrt(len(grams))
        value = math.fsum((state["gain_bias"], ngram, math.fsum(map(operator.mul, state["gain_dense"], dense))))
        if state["target"] == "gain":
            value = 0.5 + 0.5 * value
        return min(1.0, max(0.0, value))

    def score_features(self, features: Features, x: Any) -> float:
        return self.score_text_row(x)

    def score_one(self, x: Any, modality: str | None = None, probe: Any = None) -> float:
        return self.score_text_row(x)

    def score_many(self, xs: Sequence[Any], probes: Any = None) -> np.ndarray:
        # the same code path as score_one, so batch and single-request scores are bit-identical
        return np.fromiter((self.score_text_row(x) for x in xs), dtype=np.float64, count=len(xs))

    # -- persistence ------------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write ``path/estimator.json`` and ``path/weights.npz`` (no pickle); returns the directory."""
        self.path_ = _save_state(self, self._require(), Path(path))
        return self.path_

    @classmethod
    def load(cls, path: str | Path) -> LearnedEstimator:
        """Load a directory written by ``save``. Raises ``ConfigError`` naming what is missing or malformed."""
        params, state = _load_state(Path(path))
        est = cls(**params)
        est._state = state
        est.path_ = Path(path)
        return est

    def params(self) -> dict[str, Any]:
        return {"alphas": list(self.alphas), "ngram_weights": list(self.ngram_weights), "numeric": list(self.numeric),
                "cv_folds": self.cv_folds, "seed": self.seed}

    def to_config(self) -> dict[str, Any]:
        """``{"kind": "learned", "path": ...}`` once saved; the unfitted parameters otherwise."""
        if self.path_ is not None:
            return {"kind": "learned", "path": str(self.path_)}
        return {"kind": "learned", **self.params()}

    @classmethod
    def from_config(cls, config: Mapping[str, Any], field: str = "estimator") -> LearnedEstimator:
        """Load from ``{"kind": "learned", "path": DIR}``, or build an unfitted one from parameters."""
        return from_config(config, field)

    def __repr__(self) -> str:
        where = f", path={str(self.path_)!r}" if self.path_ else ""
        return f"LearnedEstimator(fitted={self.fitted}{where})"


def _floats(values: Any, name: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise ConfigError(f"estimator.{name}", f"must be a list of numbers, got {values!r}") from None


def _numeric_value(x: Any, name: str) -> float:
    value = x.get(name) if isinstance(x, Mapping) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return 0.0  # missing or non-finite: the column's neutral value
    return float(value)


def _validate(est: LearnedEstimator, field: str = "estimator") -> None:
    if not est.alphas or any(not math.isfinite(a) or a <= 0 for a in est.alphas):
        raise ConfigError(f"{field}.alphas", f"must be positive numbers, got {list(est.alphas)}")
    if not est.ngram_weights or any(not math.isfinite(k) or k < 0 for k in est.ngram_weights):
        raise ConfigError(f"{field}.ngram_weights", f"must be numbers >= 0, got {list(est.ngram_weights)}")
    if not all(isinstance(n, str) and n for n in est.numeric):
        raise ConfigError(f"{field}.numeric", f"must be a list of field names, got {list(est.numeric)}")
    if isinstance(est.cv_folds, bool) or not isinstance(est.cv_folds, int) or est.cv_folds < 2:
        raise ConfigError(f"{field}.cv_folds", f"must be an integer >= 2, got {est.cv_folds!r}")
    if isinstance(est.seed, bool) or not isinstance(est.seed, int):
        raise ConfigError(f"{field}.seed", f"must be an integer, got {est.seed!r}")


def from_config(config: Mapping[str, Any], field: str = "estimator") -> LearnedEstimator:
    """The config registry's factory for ``kind: learned`` (see ``LearnedEstimator.from_config``)."""
    from tierswitch.config import only_keys, rebased, section

    options = {k: v for k, v in section(config, field).items() if k != "kind"}
    only_keys(options, field, {"path", "alphas", "ngram_weights", "numeric", "cv_folds", "seed"})
    if "path" in options:
        if len(options) > 1:
            extra = sorted(set(options) - {"path"})[0]
            raise ConfigError(f"{field}.{extra}", "a saved estimator takes only 'path' (its parameters are saved)")
        path = options["path"]
        if not isinstance(path, str) or not path:
            raise ConfigError(f"{field}.path", f"must be the directory of a saved estimator, got {path!r}")
        try:
            return LearnedEstimator.load(path)
        except ConfigError as exc:
            raise ConfigError(f"{field}.path", str(exc).split(": ", 1)[-1]) from exc
    try:
        return LearnedEstimator(**options)
    except ConfigError as exc:
        raise rebased(exc, "estimator", field) from exc
    except TypeError as exc:
        raise ConfigError(field, f"bad parameter: {exc}") from exc


def _outcomes(y: Any, n: int) -> tuple[np.ndarray, str]:
    try:
        Y = np.asarray(y, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ConfigError("y", f"outcomes must be numbers in [0, 1]: {exc}") from exc
    if Y.ndim == 1:
        Y, target = Y[:, None], "need"
    elif Y.ndim == 2 and Y.shape[1] >= 2:
        target = "gain"
    else:
        raise ConfigError("y", f"must have shape (n,) or (n, tiers>=2), got {Y.shape}")
    if len(Y) != n:
        raise ConfigError("y", f"has {len(Y)} rows for {n} inputs")
    if not np.isfinite(Y).all() or Y.min() < 0 or Y.max() > 1:
        raise ConfigError("y", "outcomes must be finite and within [0, 1]; drop rows with missing outcomes first")
    return Y, target


def _fit_ridge(est: LearnedEstimator, xs: list[Any], y: Any, tiers: Sequence[str] | None) -> dict[str, Any]:
    """Fit sklearn's Ridge over a CV grid, then fold the winner into plain arrays (see ``_make_state``)."""
    from scipy import sparse
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import KFold

    Y, target = _outcomes(y, len(xs))
    if len(xs) < 2 * est.cv_folds:
        raise ConfigError("xs", f"need at least {2 * est.cv_folds} rows to fit with {est.cv_folds}-fold CV")
    if tiers is not None and len(tiers) != Y.shape[1]:
        raise ConfigError("tiers", f"names {len(tiers)} tiers for {Y.shape[1]} outcome column(s)")
    dense, buckets = est.design(xs)
    mu, sd = dense.mean(axis=0), dense.std(axis=0)
    sd[sd == 0] = 1.0  # a constant feature carries no signal; keep it finite
    flat = np.fromiter((b for row in buckets for b in row), dtype=np.int64)
    used = np.unique(flat)
    indptr = np.cumsum([0] + [len(row) for row in buckets])
    cols = np.searchsorted(used, flat)
    vals = np.fromiter((1.0 / math.sqrt(len(row)) for row in buckets for _ in row), dtype=np.float64)
    grams = sparse.csr_matrix((vals, cols, indptr), shape=(len(xs), len(used)))
    grams.sum_duplicates()  # hash collisions within a row add up, as they do when scoring
    z = sparse.csr_matrix((dense - mu) / sd)
    score_y = Y[:, -1] - Y[:, 0] if target == "gain" else Y[:, 0]

    def design(k: float) -> Any:
        return sparse.hstack([z, grams * k]).tocsr() if k > 0 else z

    folds = list(KFold(est.cv_folds, shuffle=True, random_state=est.seed).split(dense))
    single = len(est.alphas) == len(est.ngram_weights) == 1  # nothing to choose: skip the CV fits
    grid: list[dict[str, Any]] = []
    for k in est.ngram_weights:
        X = design(k)
        for alpha in est.alphas:
            errors = [] if single else [
                np.mean((Ridge(alpha=alpha).fit(X[tr], score_y[tr]).predict(X[te]) - score_y[te]) ** 2)
                for tr, te in folds]
            grid.append({"ngram_weight": k, "alpha": alpha, "cv_mse": float(np.mean(errors)) if errors else None})
    best = min(grid, key=lambda g: g["cv_mse"] if g["cv_mse"] is not None else 0.0)
    model = Ridge(alpha=best["alpha"]).fit(design(best["ngram_weight"]), Y)
    coef = np.atleast_2d(model.coef_)
    n_dense = dense.shape[1]
    dense_w = coef[:, :n_dense] / sd
    bias = np.atleast_1d(model.intercept_) - dense_w @ mu
    bucket_w = coef[:, n_dense:] * best["ngram_weight"] if best["ngram_weight"] > 0 else np.zeros((len(bias), 0))
    keep = np.flatnonzero(np.any(bucket_w != 0, axis=0)) if bucket_w.size else np.zeros(0, dtype=np.int64)
    report = {"rows": len(xs), "target": target, "tiers": list(tiers) if tiers is not None else None,
              "alpha": best["alpha"], "ngram_weight": best["ngram_weight"], "cv_mse": best["cv_mse"], "grid": grid,
              "buckets": int(len(keep))}
    state = _make_state(target, dense_w, bias, used[keep] if bucket_w.size else used[:0], bucket_w[:, keep], report)
    state["sklearn"] = (model, design(best["ngram_weight"]))  # kept in memory only, for benchmarks and checks
    return state


def _make_state(target: str, dense_w: np.ndarray, bias: np.ndarray, buckets: np.ndarray, bucket_w: np.ndarray,
                report: dict[str, Any]) -> dict[str, Any]:
    """Serving state from plain arrays: the per-output weights, and the gain (or need) weights as Python floats."""
    if target == "gain":
        gain_dense, gain_bias, gain_b = dense_w[-1] - dense_w[0], bias[-1] - bias[0], bucket_w[-1] - bucket_w[0]
    else:
        gain_dense, gain_bias, gain_b = dense_w[0], bias[0], bucket_w[0]
    return {
        "target": target, "dense_w": dense_w, "bias": bias, "buckets": buckets, "bucket_w": bucket_w,
        "columns": {int(b): i for i, b in enumerate(buckets)}, "report": report,
        "gain_dense": [float(v) for v in gain_dense], "gain_bias": float(gain_bias),
        "gain_buckets": {int(b): float(w) for b, w in zip(buckets, gain_b) if w != 0.0},
    }


def _save_state(est: LearnedEstimator, state: dict[str, Any], path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    np.savez(path / "weights.npz", dense_w=state["dense_w"], bias=state["bias"], buckets=state["buckets"],
             bucket_w=state["bucket_w"])
    meta = {"format": FORMAT, "params": est.params(), "target": state["target"],
            "features": list(est.feature_names()), "report": state["report"]}
    (path / "estimator.json").write_text(_dumps(meta), encoding="utf-8")
    return path


def _load_state(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    try:
        meta = json.loads((path / "estimator.json").read_text(encoding="utf-8"))
        with np.load(path / "weights.npz", allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in ("dense_w", "bias", "buckets", "bucket_w")}
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError("path", f"{path} is not a saved LearnedEstimator ({exc}); save one with .save(dir)") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ConfigError("path", f"{path}/estimator.json is not in format {FORMAT!r}")
    params = meta.get("params")
    if not isinstance(params, dict):
        raise ConfigError("path", f"{path}/estimator.json has no params")
    n_out, n_dense = arrays["dense_w"].shape if arrays["dense_w"].ndim == 2 else (0, 0)
    expected = len(DENSE_FEATURES) + len(params.get("numeric", ()))
    if (meta.get("target") not in ("gain", "need") or n_dense != expected or arrays["bias"].shape != (n_out,)
            or arrays["bucket_w"].shape != (n_out, len(arrays["buckets"]))):
        raise ConfigError("path", f"{path}/weights.npz shapes do not match its estimator.json")
    state = _make_state(meta["target"], arrays["dense_w"], arrays["bias"], arrays["buckets"].astype(np.int64),
                        arrays["bucket_w"], meta.get("report", {}))
    return params, state


def _dumps(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True)
