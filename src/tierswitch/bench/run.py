"""The replay benchmark: fit the learned estimator on training rows, score held-out rows, measure, aggregate seeds.

Two modes: ``seeds`` holdout splits (each split fits its own model; figures are reported per split and as mean and
standard deviation), or ``folds``-fold cross-fitting (every row scored by the model of the fold that held it out;
one curve over all rows). Either way the report records which rows trained which model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tierswitch.bench.compare import assign_lambda, lambda_sweep, per_tier_metrics, tfidf_probabilities, unit_costs
from tierswitch.bench.evaluate import CPTS, Target, evaluate_scored
from tierswitch.bench.metrics import accuracy, apgr, cpt, mean_cost, routellm_curve, shares
from tierswitch.bench.split import Split, holdout, kfold, predefined
from tierswitch.bench.sweep import assign_by_cuts
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


def _per_tier_split(
    data: ReplayData, split: Split, target: Target, seed: int, params: Mapping[str, Any], progress: bool,
    ridge_choice: Mapping[str, Any],
) -> dict[str, Any]:
    """Fit the per-tier outcome model and the TF-IDF baseline on the training rows; measure both held out."""
    from tierswitch.estimator.outcome import TierOutcomeModel

    train, test = data.subset(split.train), data.subset(split.test)
    unit = unit_costs(train)
    # the banded fit's CV choice on the same training rows: not searched twice
    ridge = {k: [v] for k, v in (("alphas", ridge_choice.get("alpha")),
                                 ("ngram_weights", ridge_choice.get("ngram_weight"))) if v is not None}
    model = TierOutcomeModel(seed=seed, numeric=params.get("numeric", ()), categorical=params.get("categorical", ()),
                             ridge=ridge).fit(train.inputs, train.outcomes, train.tiers, progress=progress)
    assert model.oof_ is not None
    # the operating point: lam chosen on the training rows' out-of-fold probabilities only
    points = lambda_sweep(model.oof_, train, unit)
    point = target.pick(points, float(train.outcomes[:, -1].mean()))
    met = point is not None
    if point is None:
        point = max(points, key=lambda p: (p.accuracy, -p.cost))
    lam = point.cuts[0]
    P = model.predict_proba(test.inputs)
    T = tfidf_probabilities(train, test.inputs)
    chosen = assign_lambda(P, unit, lam)
    out: dict[str, Any] = {"P": P, "T": T, "lam": lam, "assign": chosen, "unit_costs": unit.tolist(),
                           "target_met_on_train": met, "model": {k: v for k, v in model.fit_report().items()
                                                                 if k not in ("grid",)}}
    full_acc, full_cost = float(test.outcomes[:, -1].mean()), float(test.costs[:, -1].mean())
    acc = accuracy(test.outcomes, chosen)
    out["chosen"] = {"lam": lam, "accuracy": acc, "cost": mean_cost(test.costs, chosen),
                     "accuracy_vs_full": acc / full_acc if full_acc else None,
                     "cost_reduction": 1 - mean_cost(test.costs, chosen) / full_cost if full_cost else 0.0,
                     "shares": dict(zip(data.tiers, shares(chosen, len(data.tiers)).tolist()))}
    for name, probs in (("per_tier", P), ("tfidf", T)):
        curve = routellm_curve(probs[:, -1] - probs[:, 0], test.outcomes[:, 0], test.outcomes[:, -1])
        out[name] = {"apgr": apgr(curve), **{f"cpt{round(c * 100)}": cpt(curve, c) for c in CPTS},
                     **per_tier_metrics(test, probs, unit)}
    return out


def _groups(test: ReplayData, assign: np.ndarray) -> dict[str, Any]:
    """Accuracy, cost and tier shares per value of the spec's ``group`` column, for one routing of ``test``."""
    if test.groups is None:
        return {}
    out = {}
    labels = np.asarray(test.groups)
    for g in sorted(set(test.groups)):
        m = labels == g
        out[g] = {"rows": int(m.sum()), "accuracy": accuracy(test.outcomes[m], assign[m]),
                  "cost": mean_cost(test.costs[m], assign[m]),
                  "full_accuracy": float(test.outcomes[m, -1].mean()),
                  "shares": dict(zip(test.tiers, shares(assign[m], len(test.tiers)).tolist()))}
    return out


def run_replay(
    data: ReplayData, *, seeds: Sequence[int] = (0,), test_size: float = 0.5, folds: int | None = None,
    params: Mapping[str, Any] | None = None, target: Target | None = None, calibration_folds: int = 5,
    random_seeds: Sequence[int] = tuple(range(10)), progress: bool = False, train_rows: int | None = None,
    per_tier: bool = True,
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
        use_column = data.splits is not None
        for seed in _progress(list(seeds[:1]) if use_column else seeds, progress, "seeds"):
            split = predefined(data.splits) if data.splits is not None else holdout(
                len(data), test_size, seed, train_rows)
            test = data.subset(split.test)
            s, cuts, report, met = _scored_split(data, split.train, split.test, params, target, seed,
                                                 calibration_folds)
            metrics = evaluate_scored(test, s, random_seeds=random_seeds, progress=progress)
            point = apply_cuts(test, s, cuts)
            banded = assign_by_cuts(s, cuts)
            run = {"name": split.name, "metrics": metrics, "chosen": _point_report(test, point),
                   "models": [{"split": split.describe(data.ids), "estimator": report, "cuts": list(cuts),
                               "target_met_on_train": met}]}
            if per_tier:
                pt = _per_tier_split(data, split, target, seed, params, progress, report)
                run["per_tier"] = {k: v for k, v in pt.items() if k not in ("P", "T", "assign")}
                run["groups"] = {"banded": _groups(test, banded), "per_tier": _groups(test, pt["assign"])}
                run["rows"] = [
                    {"id": test.ids[i], "split": "test", "group": test.groups[i] if test.groups else None,
                     "score": float(s[i]), "banded_tier": data.tiers[banded[i]],
                     "p_right": dict(zip(data.tiers, pt["P"][i].round(6).tolist())),
                     "tfidf_p_right": dict(zip(data.tiers, pt["T"][i].round(6).tolist())),
                     "per_tier_tier": data.tiers[pt["assign"][i]]} for i in range(len(test))]
            runs.append(run)
    return {
        "source": data.source,
        "tiers": list(data.tiers),
        "rows": len(data),
        "skipped": [{"id": s.id, "reason": s.reason} for s in data.skipped],
        "excluded": data.excluded,
        "mode": f"{folds}-fold cross-fit (seed {seeds[0]})" if folds else "predefined split column"
        if data.splits is not None else f"holdout train_rows={train_rows}" if train_rows
        else f"holdout test_size={test_size:g}",
        "duplicates": data.duplicates,
        "conventions": {
            "oracle": "the cheapest tier that is right for the row; when no tier is right, the cheapest tier "
                      "(cost convention 'no tier right -> cheapest'); 'oracle_full' sends those rows to the full "
                      "tier instead (the same accuracy, a higher cost)",
            "spread": "± is the sample standard deviation (ddof=1) over the runs (seeds)",
            "duplicates": "rows repeating an input are all kept and scored as recorded; models learn the mean",
        },
        "target": target.describe(),
        "summary": _summary(runs),
        "runs": [{k: v for k, v in r.items() if k not in ("metrics", "rows")} | {"metrics": _brief(r["metrics"])}
                 for r in runs],
        "rows_primary": runs[0].get("rows", []),
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
        ok = arr[np.isfinite(arr)]
        if not len(ok):  # e.g. no sweep point reached 99% of full accuracy in any run
            return {"mean": float("nan"), "std": float("nan"), "min": float("nan"), "max": float("nan"),
                    "n": int(len(arr))}
        sd = float(np.std(ok, ddof=1)) if len(ok) > 1 else 0.0  # sample sd over seeds
        return {"mean": float(np.nanmean(arr)), "std": sd, "min": float(np.nanmin(arr)),
                "max": float(np.nanmax(arr)), "n": int(len(arr))}

    out: dict[str, Any] = {}
    for key in _SUMMARY_KEYS:
        out[f"learned_{key}"] = stats([r["metrics"]["routellm"][key] for r in runs])
        out[f"length_{key}"] = stats([r["metrics"]["length_baseline"][key] for r in runs])
        out[f"random_{key}"] = stats([r["metrics"]["random"][key] for r in runs])
    if all("per_tier" in r for r in runs):
        for name in ("per_tier", "tfidf"):
            for key in _SUMMARY_KEYS:
                out[f"{name}_{key}"] = stats([r["per_tier"][name][key] for r in runs])
            for f in ("0.95", "0.97", "0.99"):
                vals = [r["per_tier"][name]["at"][f] for r in runs]
                out[f"{name}_cost_vs_full_at_{f}"] = stats([v["cost_vs_full"] if v else float("nan") for v in vals])
        for f in ("0.95", "0.97", "0.99"):
            vals = [r["metrics"]["cost_reduction_at"].get(f) for r in runs]
            out[f"banded_cost_vs_full_at_{f}"] = stats([1 - v["cost_reduction"] if v else float("nan") for v in vals])
        out["per_tier_chosen_accuracy_vs_full"] = stats([r["per_tier"]["chosen"]["accuracy_vs_full"] for r in runs])
        out["per_tier_chosen_cost_reduction"] = stats([r["per_tier"]["chosen"]["cost_reduction"] for r in runs])
        for t in runs[0]["metrics"]["tiers"]:
            out[f"per_tier_chosen_share_{t}"] = stats([r["per_tier"]["chosen"]["shares"][t] for r in runs])
    out["chosen_accuracy_vs_full"] = stats([r["chosen"]["accuracy_vs_full"] for r in runs])
    out["chosen_cost_reduction"] = stats([r["chosen"]["cost_reduction"] for r in runs])
    for fraction, key in (("0.95", "cost_reduction_at_95"), ("0.99", "cost_reduction_at_99")):
        values = [r["metrics"]["cost_reduction_at"][fraction] for r in runs]
        out[key] = stats([v["cost_reduction"] if v else float("nan") for v in values])
    return out
