"""``tune --router per-tier``: fit a ``TierOutcomeModel`` on the training rows, pick ``lam`` for a target on its
out-of-fold probabilities (training rows only), check it held out, and write a loadable ``learned`` policy config.

The written config routes with ``LearnedPolicy``'s utility rule ``argmax P(right) - lam * cost`` where ``cost`` is
each tier's mean cost on the training rows over the full tier's (so ``lam`` is in units of the full tier's cost)::

    policy: {kind: learned, tiers: [...], model: {kind: outcome, path: DIR}, lam: 0.42, costs: {...}}
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tierswitch.bench.compare import assign_lambda, lambda_sweep, unit_costs
from tierswitch.bench.evaluate import Target
from tierswitch.bench.metrics import accuracy, mean_cost, shares
from tierswitch.bench.split import Split, holdout
from tierswitch.bench.table import ReplayData
from tierswitch.bench.tune import config_paths, write_whole
from tierswitch.estimator.outcome import TierOutcomeModel

__all__ = ["PerTierTune", "tune_per_tier", "tune_per_tier_seeds", "write_per_tier_config"]


@dataclass
class PerTierTune:
    """A tuned per-tier policy: the model, ``lam``, the unit costs, and the figures on both sides of the split."""

    target: Target
    split: Split
    tiers: tuple[str, ...]
    model: TierOutcomeModel
    lam: float
    costs: dict[str, float]
    met_on_train: bool
    heldout: dict[str, Any]

    def summary(self) -> dict[str, Any]:
        return {"target": self.target.describe(), "router": "per-tier", "lam": self.lam, "costs": self.costs,
                "met_on_train": self.met_on_train, "met_heldout": self.heldout["met"], "heldout": self.heldout,
                "model": {k: v for k, v in self.model.fit_report().items() if k != "reliability"}}


def tune_per_tier(data: ReplayData, target: Target, *, seed: int = 0, test_size: float = 0.5,
                  train_rows: int | None = None, progress: bool = False,
                  categorical: Sequence[str] = (), numeric: Sequence[str] = ()) -> PerTierTune:
    split = holdout(len(data), test_size, seed, train_rows)
    train, test = data.subset(split.train), data.subset(split.test)
    model = TierOutcomeModel(seed=seed, categorical=categorical, numeric=numeric).fit(
        train.inputs, train.outcomes, train.tiers, progress=progress)
    assert model.oof_ is not None
    unit = unit_costs(train)
    points = lambda_sweep(model.oof_, train, unit)
    point = target.pick(points, float(train.outcomes[:, -1].mean()))
    met = point is not None
    if point is None:
        key = (lambda p: (p.accuracy, -p.cost)) if target.kind == "accuracy" else (lambda p: (-p.cost, p.accuracy))
        point = max(points, key=key)
    lam = point.cuts[0]
    a = assign_lambda(model.predict_proba(test.inputs), unit, lam)
    acc, cost = accuracy(test.outcomes, a), mean_cost(test.costs, a)
    full_acc, full_cost = float(test.outcomes[:, -1].mean()), float(test.costs[:, -1].mean())
    sh = shares(a, len(data.tiers))
    met_held = {"accuracy": acc >= target.value * full_acc, "cost": cost <= target.value + 1e-12,
                "full_share": sh[-1] <= target.value + 1e-12}[target.kind]
    heldout = {"accuracy": acc, "cost": cost, "accuracy_vs_full": acc / full_acc if full_acc else None,
               "cost_reduction": 1 - cost / full_cost if full_cost else 0.0,
               "shares": dict(zip(data.tiers, sh.tolist())), "met": bool(met_held), "rows": len(test)}
    return PerTierTune(target, split, data.tiers, model, float(lam), dict(zip(data.tiers, unit.tolist())), met,
                       heldout)


def tune_per_tier_seeds(data: ReplayData, target: Target, seeds: Sequence[int], **kwargs: Any) -> dict[str, Any]:
    """``tune --seeds``: one tune per seed; the spread of the held-out figures (sample sd over seeds)."""
    steps: Any = seeds
    if kwargs.get("progress") and len(seeds) > 1:
        from tqdm import tqdm

        steps = tqdm(seeds, desc="tune seeds", leave=False)
    results = [tune_per_tier(data, target, seed=s, **kwargs) for s in steps]

    def stat(values: list[float]) -> dict[str, float]:
        arr = np.asarray(values, dtype=np.float64)
        return {"mean": float(arr.mean()), "sd": float(arr.std(ddof=1)) if len(arr) > 1 else 0.0, "n": len(arr)}

    return {"seeds": list(seeds), "results": [r.summary() for r in results],
            "accuracy_vs_full": stat([r.heldout["accuracy_vs_full"] for r in results]),
            "cost_reduction": stat([r.heldout["cost_reduction"] for r in results]),
            "met_heldout": sum(r.heldout["met"] for r in results),
            **{f"share_{t}": stat([r.heldout["shares"][t] for r in results]) for t in data.tiers}}


def write_per_tier_config(result: PerTierTune, out: str | Path, model_dir: str | Path | None = None) -> Path:
    import yaml

    out, model_dir = config_paths(out, model_dir)
    result.model.save(model_dir)
    h = result.heldout
    header = (f"# written by `tierswitch tune --router per-tier`: {result.target.describe()}\n"
              f"# trained on {len(result.split.train)} rows ({result.split.name}); held out {h['rows']} rows: "
              f"accuracy {h['accuracy']:.4f} ({h['accuracy_vs_full']:.3f} x full), cost reduction "
              f"{h['cost_reduction']:.3f}\n")
    body = {"policy": {"kind": "learned", "tiers": list(result.tiers),
                       "model": {"kind": "outcome", "path": str(model_dir)}, "lam": result.lam,
                       "costs": result.costs}}
    return write_whole(out, header + yaml.safe_dump(body, sort_keys=False))
