"""The replay benchmark: fit the learned estimator on training rows, score held-out rows, measure, aggregate seeds.

Two modes: ``seeds`` holdout splits (each split fits its own model; figures are reported per split and as mean and
standard deviation), or ``folds``-fold cross-fitting (every row scored by the model of the fold that held it out;
one curve over all rows). Either way the report records which rows trained which model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tierswitch.bench.evaluate import CPTS, Target, evaluate_scored
from tierswitch.bench.split import holdout, kfold
from tierswitch.bench.table import ReplayData
from tierswitch.bench.tune import apply_cuts, calibrate_cuts, fit_estimator

__all__ = ["run_replay"]

_SUMMARY_KEYS = ("apgr", *(f"cpt{round(c * 100)}" for c in CPTS))


def _scored_split(
    data: ReplayData, train_rows: np.ndarray, test_rows: np.ndarray, params: Mapping[str, Any], target: Target,
    seed: int, folds: int,
) -> tuple[np.ndarray, tuple[float, ...], dict[str, Any], bool]:
    train = data.subset(train_rows)
    estimator = fit_estimator(train, {"seed": seed, **params})
    cuts, _, met = calibrate_cuts(train, estimator, target, folds=folds, seed=seed, params={"seed": seed, **params})
    scores = estimator.score_many([data.inputs[i] for i in test_rows])
    report = {k: v for k, v in estimator.fit_report().items() if k != "grid"}
    return scores, cuts, report, met


def run_replay(
    data: ReplayData, *, seeds: Sequence[int] = (0,), test_size: float = 0.5, folds: int | None = None,
    params: Mapping[str, Any] | None = None, target: Target | None = None, calibration_folds: int = 5,
    random_seeds: Sequence[int] = tuple(range(10)), progress: bool = False,
) -> dict[str, Any]:
    """Run the benchmark and return the report (plain data, ready for JSON). ``report["primary"]`` holds the full
    metrics of the first split (or of the cross-fitted scores) that the curve CSV and the plot show."""
    params = dict(params or {})
    target = target or Target("accuracy", 0.95)
    runs: list[dict[str, Any]] = []
    if folds:
        splits = kfold(len(data), folds, seeds[0])
        scores = np.empty(len(data))
        assign_cuts: list[tuple[np.ndarray, tuple[float, ...]]] = []
        models = []
        for split in _progress(splits, progress, "folds"):
            s, cuts, report, met = _scored_split(data, split.train, split.test, params, target, seeds[0],
                                                 calibration_folds)
            scores[split.test] = s
            assign_cuts.append((split.test, cuts))
            models.append({"split": split.describe(data.ids), "estimator": report, "cuts": list(cuts),
                           "target_met_on_train": met})
        metrics = evaluate_scored(data, scores, random_seeds=random_seeds, progress=progress)
        chosen = _combine_folds(data, scores, assign_cuts)
        runs.append({"name": f"{folds}-fold cross-fit", "metrics": metrics, "chosen": chosen, "models": models})
    else:
        for seed in _progress(seeds, progress, "seeds"):
            split = holdout(len(data), test_size, seed)
            test = data.subset(split.test)
            s, cuts, report, met = _scored_split(data, split.train, split.test, params, target, seed,
                                                 calibration_folds)
            metrics = evaluate_scored(test, s, random_seeds=random_seeds, progress=progress)
            point = apply_cuts(test, s, cuts)
            runs.append({"name": split.name, "metrics": metrics, "chosen": _point_report(test, point),
                         "models": [{"split": split.describe(data.ids), "estimator": report, "cuts": list(cuts),
                                     "target_met_on_train": met}]})
    return {
        "source": data.source,
        "tiers": list(data.tiers),
        "rows": len(data),
        "skipped": [{"id": s.id, "reason": s.reason} for s in data.skipped],
        "excluded": data.excluded,
        "mode": f"{folds}-fold cross-fit (seed {seeds[0]})" if folds else f"holdout test_size={test_size:g}",
        "target": target.describe(),
        "summary": _summary(runs),
        "runs": [{k: v for k, v in r.items() if k != "metrics"} | {"metrics": _brief(r["metrics"])} for r in runs],
        "primary": runs[0]["metrics"] | {"chosen": runs[0]["chosen"], "name": runs[0]["name"]},
    }


def _progress(items: Sequence[Any], enabled: bool, desc: str) -> Any:
    if not enabled or len(items) < 2:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=desc, leave=False)


def _point_report(data: ReplayData, point: Any) -> dict[str, Any]:
    full = data.outcomes[:, -1].mean()
    full_cost = data.costs[:, -1].mean()
    return {**point.as_dict(data.tiers), "accuracy_vs_full": float(point.accuracy / full) if full else None,
            "cost_reduction": float(1 - point.cost / full_cost) if full_cost else 0.0}


def _combine_folds(data: ReplayData, scores: np.ndarray, parts: list[tuple[np.ndarray, tuple[float, ...]]]) -> Any:
    from tierswitch.bench.metrics import accuracy, mean_cost, shares
    from tierswitch.bench.sweep import SweepPoint, assign_by_cuts

    assign = np.empty(len(data), dtype=np.int64)
    for rows, cuts in parts:
        assign[rows] = assign_by_cuts(scores[rows], cuts)
    point = SweepPoint((), accuracy(data.outcomes, assign), mean_cost(data.costs, assign),
                       tuple(float(s) for s in shares(assign, len(data.tiers))))
    return _point_report(data, point) | {"cuts": "per fold (see runs[0].models)"}


def _brief(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """A split's headline figures (the full curve stays in ``primary`` only, to keep the JSON readable)."""
    rl = metrics["routellm"]
    return {"rows": metrics["rows"], "tiers": metrics["tiers"], "oracle": metrics["oracle"],
            "routellm": {k: v for k, v in rl.items() if k != "curve"}, "length_baseline": metrics["length_baseline"],
            "random": metrics["random"], "cost_reduction_at": metrics["cost_reduction_at"]}


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    def stats(values: list[float]) -> dict[str, float]:
        arr = np.asarray(values, dtype=np.float64)
        return {"mean": float(np.nanmean(arr)), "std": float(np.nanstd(arr)), "min": float(np.nanmin(arr)),
                "max": float(np.nanmax(arr)), "n": int(len(arr))}

    out: dict[str, Any] = {}
    for key in _SUMMARY_KEYS:
        out[f"learned_{key}"] = stats([r["metrics"]["routellm"][key] for r in runs])
        out[f"length_{key}"] = stats([r["metrics"]["length_baseline"][key] for r in runs])
        out[f"random_{key}"] = stats([r["metrics"]["random"][key] for r in runs])
    out["chosen_accuracy_vs_full"] = stats([r["chosen"]["accuracy_vs_full"] for r in runs])
    out["chosen_cost_reduction"] = stats([r["chosen"]["cost_reduction"] for r in runs])
    for fraction, key in (("0.95", "cost_reduction_at_95"), ("0.99", "cost_reduction_at_99")):
        values = [r["metrics"]["cost_reduction_at"][fraction] for r in runs]
        out[key] = stats([v["cost_reduction"] if v else float("nan") for v in values])
    return out
