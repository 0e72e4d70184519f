"""``LearnedEstimator``: the fitted complexity scorer, served as plain Python, and its saved form.

Features come from ``tierswitch.estimator.learned_features`` (dense counts plus hashed word n-grams); fitting
(scikit-learn ridge over a cross-validated grid) lives in ``tierswitch.estimator.learned_fit`` and is imported only by
``fit``. With per-tier outcomes the score is ``0.5 + 0.5 * (p_full - p_cheapest)``: the expected gain of the full
tier over the cheapest one, mapped to [0, 1]; with one "need" column it is that column's prediction, clipped.

At the end of ``fit`` the scikit-learn model is folded into numpy arrays and a dict of hashed n-gram weights, so
``score_one`` costs a regex pass and a few dict lookups (no sparse matrices, no ``predict`` overhead). Scores are
summed with ``math.fsum``, so they are bit-identical across processes: a threshold tuned on them is reproducible.
Saved as a directory holding ``estimator.json`` and ``weights.npz`` (loaded with ``allow_pickle=False``); each file is
renamed into place whole, and the JSON carries the weights' checksum, so a reader never mixes two saves.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import operator
import os
import threading
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tierswitch.errors import ConfigError, NotFittedError
from tierswitch.estimator.base import Estimator
from tierswitch.estimator.learned_features import DENSE_FEATURES, analyse, bucket, numeric_value, text_of
from tierswitch.types import Features

# DENSE_FEATURES and text_of are re-exported: callers import them from here
__all__ = ["DENSE_FEATURES", "LearnedEstimator", "from_config", "text_of"]

FORMAT = "tierswitch.learned/1"
_DEFAULT_ALPHAS = (100.0, 300.0, 1000.0, 3000.0)
_DEFAULT_NGRAM_WEIGHTS = (0.0, 2.0, 4.0, 8.0)


class LearnedEstimator(Estimator):
    """Complexity score learned from recorded outcomes (features: ``learned_features``; target: ``learned_fit``).

    Parameters are stored verbatim; learned state ends in ``_``. ``numeric`` names numeric fields of dict inputs
    used as extra features, ``categorical`` fields whose value becomes one hashed token (task, domain, tenant);
    ``cv_folds`` and ``seed`` drive the cross-validation that picks ``alpha`` from
    ``alphas`` and the n-gram block weight from ``ngram_weights`` (a single pair skips cross-validation).
    """

    def __init__(
        self,
        *,
        alphas: Sequence[float] = _DEFAULT_ALPHAS,
        ngram_weights: Sequence[float] = _DEFAULT_NGRAM_WEIGHTS,
        numeric: Sequence[str] = (),
        categorical: Sequence[str] = (),
        cv_folds: int = 5,
        seed: int = 0,
    ) -> None:
        self.alphas = _floats(alphas, "alphas")
        self.ngram_weights = _floats(ngram_weights, "ngram_weights")
        if isinstance(numeric, str) or not isinstance(numeric, Sequence):
            raise ConfigError("estimator.numeric", f"must be a list of field names, got {numeric!r}")
        self.numeric = tuple(numeric)
        if isinstance(categorical, str) or not isinstance(categorical, Sequence):
            raise ConfigError("estimator.categorical", f"must be a list of field names, got {categorical!r}")
        self.categorical = tuple(categorical)
        self.cv_folds = cv_folds
        self.seed = seed
        self.path_: Path | None = None
        self._state: dict[str, Any] | None = None
        _validate(self)

    # -- features ---------------------------------------------------------------------------------------------
    def _row(self, x: Any) -> tuple[list[float], set[str]]:
        dense, grams = analyse(text_of(x))
        if self.numeric:
            dense.extend(numeric_value(x, name) for name in self.numeric)
        if self.categorical and isinstance(x, Mapping):
            # a categorical column is one more hashed token ("\x00task=math"), learned like any n-gram
            grams.update(f"\x00{name}={x.get(name)}" for name in self.categorical)
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
            buckets.append([bucket(g) for g in grams])
        return np.asarray(dense, dtype=np.float64).reshape(len(dense), -1), buckets

    # -- fitting ----------------------------------------------------------------------------------------------
    def fit(self, xs: Sequence[Any], y: Any, tiers: Sequence[str] | None = None) -> LearnedEstimator:
        """Fit on inputs ``xs`` and outcomes ``y``: ``(n, T)`` per-tier correctness (cheapest tier first) or ``(n,)``
        need-for-the-expensive-tier in [0, 1]. ``tiers`` names the columns (kept for reports). Needs scikit-learn."""
        from tierswitch.estimator.learned_fit import fit_ridge  # sklearn/scipy load only when fitting

        fitted = fit_ridge(self, list(xs), y, tiers)
        state = _make_state(fitted.target, fitted.dense_w, fitted.bias, fitted.buckets, fitted.bucket_w, fitted.report)
        state["sklearn"] = fitted.sklearn  # kept in memory only, for benchmarks and checks
        self._state = state
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
        cols = [state["columns"].get(bucket(g)) for g in grams]
        scale = 1.0 / math.sqrt(len(grams)) if grams else 0.0
        ngram = np.zeros(len(state["bias"]))
        for c in cols:
            if c is not None:
                ngram += state["bucket_w"][:, c]
        return np.asarray(state["bias"] + state["dense_w"] @ np.asarray(dense) + ngram * scale)

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
            ngram = math.fsum(state["gain_buckets"].get(bucket(g), 0.0) for g in grams)
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
        try:
            est = cls(**params)
        except TypeError as exc:
            unknown = f"{path}/estimator.json has parameters this version does not know: {exc}"
            raise ConfigError("path", unknown) from exc
        est._state = state
        est.path_ = Path(path)
        return est

    def params(self) -> dict[str, Any]:
        return {"alphas": list(self.alphas), "ngram_weights": list(self.ngram_weights), "numeric": list(self.numeric),
                "categorical": list(self.categorical), "cv_folds": self.cv_folds, "seed": self.seed}

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
    from tierswitch.validation import only_keys, rebased, section

    options = {k: v for k, v in section(config, field).items() if k != "kind"}
    only_keys(options, field, {"path", "alphas", "ngram_weights", "numeric", "categorical", "cv_folds", "seed"})
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
    weights = io.BytesIO()
    np.savez(weights, dense_w=state["dense_w"], bias=state["bias"], buckets=state["buckets"],
             bucket_w=state["bucket_w"])
    blob = weights.getvalue()
    meta = {"format": FORMAT, "params": est.params(), "target": state["target"],
            "features": list(est.feature_names()), "report": state["report"], "weights_blake2b": _checksum(blob)}
    # Weights first, then the JSON that names their checksum: a reader between the two renames (or after a crash
    # there) finds a pair that does not match and refuses it, instead of serving new weights under the old target.
    _write_whole(path / "weights.npz", blob)
    _write_whole(path / "estimator.json", _dumps(meta).encode("utf-8"))
    return path


def _write_whole(target: Path, data: bytes) -> None:
    """Write ``data`` beside ``target`` and rename it into place: readers see the old file or the new one."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _checksum(blob: bytes) -> str:
    return hashlib.blake2b(blob, digest_size=16).hexdigest()


def _load_state(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    try:
        meta = json.loads((path / "estimator.json").read_text(encoding="utf-8"))
        blob = (path / "weights.npz").read_bytes()
        with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
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
    saved_sum = meta.get("weights_blake2b")  # saves made before the checksum have none
    if saved_sum is not None and saved_sum != _checksum(blob):
        raise ConfigError("path", f"{path}/weights.npz is not the one its estimator.json was saved with (a save was "
                                  "interrupted, or files of two saves were mixed); save the estimator again")
    state = _make_state(meta["target"], arrays["dense_w"], arrays["bias"], arrays["buckets"].astype(np.int64),
                        arrays["bucket_w"], meta.get("report", {}))
    return params, state


def _dumps(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True)
