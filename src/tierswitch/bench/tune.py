"""``tune``: fit the learned estimator on a training split, pick cuts that meet a target, check them held out, and
write a router config (YAML) that reproduces the held-out figures exactly.

Cuts are calibrated on out-of-fold scores of the training rows (each scored by a model that did not see it, so the
choice is not flattered by in-sample fit) and carried to the final model as score quantiles of the training inputs:
"send the top 38% of training inputs to the full tier" becomes the final model's 62nd-percentile score.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tierswitch.bench.evaluate import Target
from tierswitch.bench.metrics import accuracy, cost_reduction, mean_cost, pgr, shares
from tierswitch.bench.split import Split, holdout, kfold
from tierswitch.bench.sweep import NEVER, SweepPoint, assign_by_cuts, sweep
from tierswitch.bench.table import ReplayData
from tierswitch.errors import ConfigError
from tierswitch.estimator.learned import LearnedEstimator
from tierswitch.validation import describe

__all__ = ["TuneResult", "apply_cuts", "calibrate_cuts", "config_paths", "fit_estimator", "policy_config", "tune",
           "write_config", "write_whole"]


def fit_estimator(train: ReplayData, params: Mapping[str, Any] | None = None) -> LearnedEstimator:
    """A ``LearnedEstimator`` (``params`` passed through) fitted on the training rows' per-tier outcomes."""
    return LearnedEstimator(**dict(params or {})).fit(train.inputs, train.outcomes, tiers=train.tiers)


def apply_cuts(data: ReplayData, scores: np.ndarray, cuts: tuple[float, ...]) -> SweepPoint:
    """Route ``data`` by ``cuts`` over ``scores`` (``Threshold``'s rule) and measure it."""
    assign = assign_by_cuts(scores, cuts)
    return SweepPoint(cuts, accuracy(data.outcomes, assign), mean_cost(data.costs, assign),
                      tuple(float(s) for s in shares(assign, len(data.tiers))))


def calibrate_cuts(
    train: ReplayData, estimator: LearnedEstimator, target: Target, *, folds: int = 5, seed: int = 0,
    levels: int | None = None, params: Mapping[str, Any] | None = None,
) -> tuple[tuple[float, ...], SweepPoint, bool]:
    """Cuts for ``estimator`` meeting ``target`` on ``train``; returns (cuts, the out-of-fold train point, met).

    When no point meets the target, the most accurate point (accuracy target) or the cheapest (cost and share
    targets) is used, and ``met`` is False.
    """
    report = estimator.fit_report()
    fixed = {**dict(params or {}), "alphas": [report["alpha"]], "ngram_weights": [report["ngram_weight"]]}
    oof = np.empty(len(train))
    for split in kfold(len(train), folds, seed):
        part = LearnedEstimator(**fixed).fit([train.inputs[i] for i in split.train], train.outcomes[split.train])
        oof[split.test] = part.score_many([train.inputs[i] for i in split.test])
    points = sweep(oof, train.outcomes, train.costs, levels or (101 if len(train.tiers) == 2 else 21))
    full_acc = float(train.outcomes[:, -1].mean())
    point = target.pick(points, full_acc)
    met = point is not None
    if point is None:
        key = (lambda p: (p.accuracy, -p.cost)) if target.kind == "accuracy" else (lambda p: (-p.cost, p.accuracy))
        point = max(points, key=key)
    final = estimator.score_many(train.inputs)
    cuts = []
    for c in point.cuts:
        below = float(np.mean(oof < c))
        cuts.append(NEVER if c >= NEVER else 0.0 if below == 0.0 else float(np.quantile(final, below)))
    return tuple(cuts), point, met


@dataclass
class TuneResult:
    """A tuned policy: the estimator, the cuts, the split, and the figures on both sides of it."""

    target: Target
    split: Split
    tiers: tuple[str, ...]
    estimator: LearnedEstimator
    cuts: tuple[float, ...]
    train_point: SweepPoint
    heldout: SweepPoint
    heldout_tiers: dict[str, dict[str, float]]
    met_on_train: bool

    def summary(self) -> dict[str, Any]:
        full = self.heldout_tiers[self.tiers[-1]]
        weak = self.heldout_tiers[self.tiers[0]]
        return {
            "target": self.target.describe(),
            "cuts": list(self.cuts),
            "met_on_train": self.met_on_train,
            "met_heldout": self.target.met(self.heldout, full["accuracy"]),
            "train_oof": self.train_point.as_dict(self.tiers),
            "heldout": {**self.heldout.as_dict(self.tiers), "cost_reduction": cost_reduction(self.heldout.cost,
                        full["cost"]), "pgr": pgr(self.heldout.accuracy, weak["accuracy"], full["accuracy"]),
                        "accuracy_vs_full": self.heldout.accuracy / full["accuracy"] if full["accuracy"] else None},
            "heldout_tiers": self.heldout_tiers,
            "estimator": {k: v for k, v in self.estimator.fit_report().items() if k != "grid"},
        }


def tune(
    data: ReplayData, target: Target, *, seed: int = 0, test_size: float = 0.5, folds: int = 5,
    params: Mapping[str, Any] | None = None, levels: int | None = None, train_rows: int | None = None,
) -> TuneResult:
    """Split ``data`` (seeded; ``train_rows`` exact training rows, else ``test_size``), fit on the train side,
    calibrate cuts for ``target``, measure them held out."""
    split = holdout(len(data), test_size, seed, train_rows)
    train, test = data.subset(split.train), data.subset(split.test)
    estimator = fit_estimator(train, {"seed": seed, **dict(params or {})})
    cuts, train_point, met = calibrate_cuts(train, estimator, target, folds=folds, seed=seed, levels=levels,
                                            params={"seed": seed, **dict(params or {})})
    heldout = apply_cuts(test, estimator.score_many(test.inputs), cuts)
    tiers = {t: {"accuracy": float(test.outcomes[:, j].mean()), "cost": float(test.costs[:, j].mean())}
             for j, t in enumerate(data.tiers)}
    return TuneResult(target, split, data.tiers, estimator, cuts, train_point, heldout, tiers, met)


def policy_config(tiers: tuple[str, ...], cuts: tuple[float, ...], model_dir: str | Path) -> dict[str, Any]:
    """The router config of a tuned policy: a ``threshold`` policy over the learned estimator saved at
    ``model_dir`` (the tiers themselves are given in code, e.g. ``ReplayTier``s or the real models)."""
    return {"policy": {"kind": "threshold", "tiers": list(tiers), "cuts": [float(c) for c in cuts]},
            "estimator": {"kind": "learned", "path": str(model_dir)}}


def write_config(result: TuneResult, out: str | Path, model_dir: str | Path | None = None) -> Path:
    """Save the estimator (default: ``<out stem>.model`` next to ``out``) and write the YAML config to ``out``."""
    import yaml

    out, model_dir = config_paths(out, model_dir)
    result.estimator.save(model_dir)
    s = result.summary()
    header = (
        f"# written by `tierswitch tune`: {s['target']}\n"
        f"# trained on {len(result.split.train)} rows ({result.split.name}); held out {len(result.split.test)} rows:\n"
        f"#   accuracy {s['heldout']['accuracy']:.4f} ({s['heldout']['accuracy_vs_full']:.3f} x full), "
        f"mean cost {s['heldout']['cost']:.6g}, cost reduction {s['heldout']['cost_reduction']:.3f}\n"
        "# load with Router.from_config(path, tiers); the estimator path is resolved against the working directory\n"
    )
    body = yaml.safe_dump(policy_config(result.tiers, result.cuts, model_dir), sort_keys=False)
    return write_whole(out, header + body)


def config_paths(out: str | Path, model_dir: str | Path | None) -> tuple[Path, Path]:
    """The YAML path of a tuned policy (refused unless .yaml/.yml; its folder made) and its model folder (default:
    ``<out stem>.model`` next to it)."""
    out = Path(out)
    if out.suffix.lower() not in (".yaml", ".yml"):
        raise ConfigError("out", f"the policy config is YAML: name it .yaml or .yml, got {describe(out.name)}")
    out.parent.mkdir(parents=True, exist_ok=True)
    return out, Path(model_dir) if model_dir is not None else out.with_suffix(".model")


def write_whole(out: Path, text: str) -> Path:
    """Write ``text`` to ``out`` through a temporary file: the config appears whole or not at all."""
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out)
    return out
