"""Fitting and persistence for ``TierOutcomeModel`` (imported only by ``fit``, ``save`` and ``load``).

Every choice is made on out-of-fold predictions of the training rows: the ridge model's penalty and n-gram weight
(its own CV), the similarity model's ``k``, the blend weight between the two (Brier score) and the per-tier Platt
calibrators. The out-of-fold calibrated probabilities are kept in memory as ``model.oof_`` so ``tune`` can pick an
operating point on the training rows without refitting.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tierswitch.errors import ConfigError
from tierswitch.estimator.learned import LearnedEstimator
from tierswitch.estimator.outcome_parts import HASH_DIM, Embedder, Knn, platt, reliability

__all__ = ["fit_outcome", "load_outcome", "save_outcome"]

_BLENDS = (0.0, 0.25, 0.5, 0.75, 1.0)


def _folds(n: int, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    parts = np.array_split(np.random.default_rng(seed).permutation(n), k)
    return [(np.sort(np.concatenate([p for j, p in enumerate(parts) if j != i])), np.sort(part))
            for i, part in enumerate(parts)]


def _brier(p: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean((p - y) ** 2))


def _steps(items: Sequence[Any], progress: bool, desc: str) -> Any:
    if not progress:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=desc, leave=False)


def fit_outcome(model: Any, xs: list[Any], Y: np.ndarray, tiers: tuple[str, ...],
                progress: bool = False) -> None:
    """Fit ``model`` in place on the training rows (see the module docstring)."""

    n, _ = Y.shape
    if n < 2 * model.cv_folds:
        raise ConfigError("xs", f"need at least {2 * model.cv_folds} rows to fit with {model.cv_folds}-fold CV")
    folds = _folds(n, model.cv_folds, model.seed)
    report: dict[str, Any] = {"rows": n, "tiers": list(tiers), "models": list(model.models), "target": "gain"}
    oof: dict[str, np.ndarray] = {}
    model.ridge_ = model.knn_ = None
    if "ridge" in model.models:
        ridge = LearnedEstimator(**model._ridge_params()).fit(xs, Y, tiers=tiers)
        chosen = ridge.fit_report()
        fixed = model._ridge_params(alphas=[chosen["alpha"]], ngram_weights=[chosen["ngram_weight"]])
        pred = np.empty_like(Y)
        for tr, te in _steps(folds, progress, "ridge folds"):
            part = LearnedEstimator(**fixed).fit([xs[i] for i in tr], Y[tr])
            pred[te] = np.vstack([part.raw_outputs(xs[i]) for i in te])
        oof["ridge"] = np.clip(pred, 0.0, 1.0)
        model.ridge_ = ridge
        report["ridge"] = {"alpha": chosen["alpha"], "ngram_weight": chosen["ngram_weight"],
                           "oof_brier": _brier(oof["ridge"], Y)}
    if "knn" in model.models:
        vectors = model._vectors(xs)
        best: tuple[float, int, np.ndarray] | None = None
        grid = []
        for k in _steps(model.ks, progress, "knn k"):
            pred = np.empty_like(Y)
            for tr, te in folds:
                pred[te] = Knn(vectors[tr], Y[tr], k).predict(vectors[te])
            score = _brier(pred, Y)
            grid.append({"k": k, "oof_brier": score})
            if best is None or score < best[0]:
                best = (score, k, pred)
        assert best is not None
        oof["knn"] = best[2]
        model.knn_ = Knn(vectors, Y.copy(), best[1])
        report["knn"] = {"k": best[1], "grid": grid, "oof_brier": best[0],
                         "embedder": type(model.embedder).__name__ if model.embedder is not None else None}
    if "ridge" in oof and "knn" in oof:
        scored = [(_brier(w * oof["ridge"] + (1 - w) * oof["knn"], Y), w) for w in _BLENDS]
        model.blend_ = min(scored)[1]
        report["blend"] = [{"ridge_weight": w, "oof_brier": b} for b, w in scored]
    else:
        model.blend_ = 1.0 if "ridge" in oof else 0.0
    if model.blend_ == 1.0:
        model.knn_ = None
    elif model.blend_ == 0.0:
        model.ridge_ = None
    report["ridge_weight"] = model.blend_
    raw = model.blend_ * oof.get("ridge", 0.0) + (1 - model.blend_) * oof.get("knn", 0.0)
    raw = np.clip(np.asarray(raw, dtype=np.float64), 0.0, 1.0)
    model.tiers_ = tiers
    model._fast = None
    model.platt_ = [platt(raw[:, j], Y[:, j]) for j in range(len(tiers))] if model.calibrate else []
    model.report_ = report  # calibrated() needs the fitted state; the report is completed below
    cal = model.calibrated(raw)
    report["reliability"] = {t: {"raw": reliability(raw[:, j], Y[:, j]),
                                 "calibrated": reliability(cal[:, j], Y[:, j])} for j, t in enumerate(tiers)}
    report["platt"] = [list(ab) for ab in model.platt_]
    model.oof_ = cal


def save_outcome(model: Any, path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    if model.ridge_ is not None:
        model.ridge_.save(path / "ridge")
    knn: dict[str, Any] | None = None
    if model.knn_ is not None:
        vec = model.knn_.vectors
        buf = io.BytesIO()
        if hasattr(vec, "indptr"):
            np.savez(buf, data=vec.data, indices=vec.indices, indptr=vec.indptr, outcomes=model.knn_.outcomes)
        else:
            np.savez(buf, dense=np.asarray(vec), outcomes=model.knn_.outcomes)
        (path / "knn.npz").write_bytes(buf.getvalue())
        embedder = model.embedder
        knn = {"k": model.knn_.k, "sparse": hasattr(vec, "indptr"),
               "embedder": getattr(embedder, "to_config", lambda: None)() if embedder is not None else None}
    meta = {"format": "tierswitch.outcome/1", "tiers": list(model.tiers_), "blend": model.blend_,
            "platt": [list(ab) for ab in model.platt_], "knn": knn, "report": model.report_,
            "params": {"models": list(model.models), "ks": list(model.ks), "categorical": list(model.categorical),
                       "numeric": list(model.numeric), "calibrate": model.calibrate, "cv_folds": model.cv_folds,
                       "seed": model.seed}}
    tmp = path / ".outcome.json.tmp"
    tmp.write_text(json.dumps(meta, indent=2, sort_keys=True), encoding="utf-8")
    tmp.replace(path / "outcome.json")
    return path


def load_outcome(cls: type[Any], path: Path, embedder: Embedder | None) -> Any:

    try:
        meta = json.loads((path / "outcome.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError("path", f"{path} is not a saved TierOutcomeModel ({exc}); save one with .save(dir)") from exc
    if not isinstance(meta, dict) or meta.get("format") != "tierswitch.outcome/1":
        raise ConfigError("path", f"{path}/outcome.json is not in format 'tierswitch.outcome/1'")
    knn_meta = meta.get("knn")
    if knn_meta and knn_meta.get("embedder") and embedder is None:
        from tierswitch.estimator.embed import embedder_from_config

        embedder = embedder_from_config(knn_meta["embedder"])
    model = cls(**meta["params"], embedder=embedder)
    model.tiers_ = tuple(meta["tiers"])
    model.blend_ = float(meta["blend"])
    model.platt_ = [(float(a), float(b)) for a, b in meta["platt"]]
    model.report_ = meta.get("report") or {}
    if (path / "ridge").exists():
        model.ridge_ = LearnedEstimator.load(path / "ridge")
    if knn_meta:
        with np.load(io.BytesIO((path / "knn.npz").read_bytes()), allow_pickle=False) as npz:
            if knn_meta["sparse"]:
                from scipy import sparse

                vec: Any = sparse.csr_matrix((npz["data"], npz["indices"], npz["indptr"]),
                                             shape=(len(npz["indptr"]) - 1, HASH_DIM))
            else:
                vec = npz["dense"]
            model.knn_ = Knn(vec, npz["outcomes"], int(knn_meta["k"]))
    return model
