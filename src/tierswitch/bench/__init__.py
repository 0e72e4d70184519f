"""Benchmark cost against accuracy (replay recorded outcomes, or run live tiers) and tune policy configs.

Everything here is plain functions over arrays plus thin orchestration; matplotlib, tqdm and scikit-learn are
imported only by the functions that need them. The CLI entry points are ``tierswitch.bench.cli.bench_main`` and
``tune_main``.
"""

from tierswitch.bench.evaluate import Target, evaluate_scored, parse_target
from tierswitch.bench.metrics import (
    accuracy,
    apgr,
    cost_reduction,
    cpt,
    mean_cost,
    oracle,
    pgr,
    random_routellm,
    routellm_curve,
)
from tierswitch.bench.run import run_replay
from tierswitch.bench.spec import ReplaySpec, load_spec, spec_from_dict
from tierswitch.bench.split import Split, holdout, kfold
from tierswitch.bench.sweep import SweepPoint, pareto, sweep
from tierswitch.bench.table import ReplayData, load_replay
from tierswitch.bench.tune import TuneResult, tune, write_config

__all__ = [
    "ReplayData",
    "ReplaySpec",
    "Split",
    "SweepPoint",
    "Target",
    "TuneResult",
    "accuracy",
    "apgr",
    "cost_reduction",
    "cpt",
    "evaluate_scored",
    "holdout",
    "kfold",
    "load_replay",
    "load_spec",
    "mean_cost",
    "oracle",
    "pareto",
    "parse_target",
    "pgr",
    "random_routellm",
    "routellm_curve",
    "run_replay",
    "spec_from_dict",
    "sweep",
    "tune",
    "write_config",
]
