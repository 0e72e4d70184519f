"""``tierswitch bench replay SPEC``, ``tierswitch bench live CONFIG`` and ``tierswitch tune SPEC``.

Entry points take ``argv`` (without the command name) and return an exit code: 0 on success, 1 when a tuned
target was not met on the held-out rows, 2 for usage errors. ``ConfigError``s propagate to ``tierswitch.cli``,
which prints them with the field at fault.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["bench_main", "tune_main"]


def _replay_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", help="replay spec (YAML, or TOML on Python >= 3.11)")
    parser.add_argument("--base-dir", default=None,
                        help="directory the spec's relative paths start from (default: the working directory)")
    parser.add_argument("--test-size", type=float, default=0.5, help="held-out share of the rows (default 0.5)")
    parser.add_argument("--train-rows", type=int, default=None,
                        help="train on exactly N random rows and evaluate on all the others (instead of --test-size)")
    parser.add_argument("--target", default="accuracy=0.95",
                        help="accuracy=FRACTION (of full-tier accuracy), cost=MEAN_COST or full_share=P")
    parser.add_argument("--alphas", type=float, nargs="+", default=None, help="ridge penalties tried by CV")
    parser.add_argument("--ngram-weights", type=float, nargs="+", default=None,
                        help="weights of the n-gram block tried by CV (0 = dense features only)")


def _params(args: argparse.Namespace) -> dict[str, object]:
    params: dict[str, object] = {}
    if args.alphas:
        params["alphas"] = args.alphas
    if args.ngram_weights:
        params["ngram_weights"] = args.ngram_weights
    return params


def _load(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from tierswitch.bench.spec import load_spec
    from tierswitch.bench.table import load_replay

    spec = load_spec(args.spec, args.base_dir)
    args._categorical = list(spec.categorical)
    return load_replay(spec), spec.numeric


def _categorical(args: argparse.Namespace) -> list[str]:
    return list(getattr(args, "_categorical", []))


def _replay(args: argparse.Namespace) -> int:
    from tierswitch.bench.evaluate import parse_target
    from tierswitch.bench.report import format_table, write_curve_csv, write_json
    from tierswitch.bench.run import run_replay

    target = parse_target(args.target)
    data, numeric = _load(args)
    params = {**_params(args), **({"numeric": list(numeric)} if numeric else {})}
    if _categorical(args):
        params["categorical"] = _categorical(args)
    report = run_replay(data, seeds=args.seeds, test_size=args.test_size, folds=args.folds, params=params,
                        target=target, progress=not args.quiet, train_rows=args.train_rows,
                        per_tier=not args.no_per_tier)
    print(format_table(report))
    out = Path(args.out)
    written = [write_json(report, out / "report.json"), write_curve_csv(report, out / "curve.csv")]
    if report.get("rows_primary"):
        from tierswitch.bench.report import write_rows_csv

        written.append(write_rows_csv(report, out / "rows.csv"))
    if not args.no_plot:
        from tierswitch.bench.plot import plot_report

        written.append(plot_report(report, out / "pareto.png"))
    if data.skipped:
        print(f"\n{len(data.skipped)} row(s) skipped for missing values (listed in report.json), e.g. "
              f"row {data.skipped[0].id}: {data.skipped[0].reason}")
    print("\nwrote " + ", ".join(str(p) for p in written))
    return 0


def _live(args: argparse.Namespace) -> int:
    from tierswitch.bench.live import run_live
    from tierswitch.bench.live_config import load_live_config

    setup = load_live_config(args.config, limit=args.limit)
    report = run_live(setup.tiers, setup.inputs, setup.labels, router=setup.router, batch_size=setup.batch_size,
                      progress=not args.quiet)
    report["dataset"] = setup.source
    width = max(len(n) for n in [*report["tiers"], "router"]) + 2
    print(f"live benchmark on {report['rows']} labelled rows of {setup.source}\n")
    print(f"{'':<{width}}{'accuracy':>9}{'mean cost':>12}{'p50 ms':>9}{'p99 ms':>9}{'items/s':>10}"
          f"{'peak py MB':>11}{'model MB':>10}")
    rows = list(report["tiers"].items()) + ([("router", report["router"])] if "router" in report else [])
    for name, r in rows:
        size = r.get("model_size_bytes")
        print(f"{name:<{width}}{r['accuracy']:>9.4f}{r['cost']:>12.6g}{r['latency_p50_ms']:>9.3f}"
              f"{r['latency_p99_ms']:>9.3f}{r['throughput_per_s']:>10.1f}{r['peak_python_bytes'] / 2**20:>11.2f}"
              f"{('n/a' if size is None else f'{size / 2**20:.2f}'):>10}")
    if "router" in report:
        shares = ", ".join(f"{k} {100 * v:.1f}%" for k, v in report["router"]["shares"].items())
        print(f"\nrouter shares: {shares}")
    if args.out:
        from tierswitch.bench.report import write_json

        print(f"wrote {write_json(report, Path(args.out) / 'live.json')}")
    return 0


def bench_main(argv: Sequence[str] | None = None) -> int:
    """``tierswitch bench replay SPEC ...`` or ``tierswitch bench live CONFIG ...``."""
    parser = argparse.ArgumentParser(prog="tierswitch bench", description="benchmark cost against accuracy")
    sub = parser.add_subparsers(dest="mode", required=True)
    replay = sub.add_parser("replay", help="replay recorded per-tier outcomes: fit, sweep, report, plot")
    _replay_args(replay)
    replay.add_argument("--seeds", type=int, nargs="+", default=[0], help="one holdout split per seed")
    replay.add_argument("--folds", type=int, default=None, help="k-fold cross-fitting instead of holdout splits")
    replay.add_argument("--out", default="bench-out", help="directory for report.json, curve.csv and pareto.png")
    replay.add_argument("--no-plot", action="store_true", help="skip the PNG")
    replay.add_argument("--quiet", action="store_true", help="no progress bars")
    replay.add_argument("--no-per-tier", action="store_true",
                        help="skip the per-tier outcome model and the TF-IDF baseline (banded score only)")
    live = sub.add_parser("live", help="run configured real tiers on a labelled dataset")
    live.add_argument("config", help="live config (YAML): dataset, tiers (factories), optional router")
    live.add_argument("--limit", type=int, default=None, help="use only the first N rows")
    live.add_argument("--out", default=None, help="directory for live.json")
    live.add_argument("--quiet", action="store_true", help="no progress bars")
    try:
        args = parser.parse_args(list(sys.argv[2:] if argv is None else argv))
    except SystemExit as exc:  # argparse exits on --help and on usage errors
        return int(exc.code or 0)
    return _replay(args) if args.mode == "replay" else _live(args)


def tune_main(argv: Sequence[str] | None = None) -> int:
    """``tierswitch tune SPEC --target accuracy=0.95 --out policy.yaml``: 0 when the target holds on the held-out
    rows, 1 when it does not (the config is written either way, and the report says so)."""
    from tierswitch.bench.evaluate import parse_target
    from tierswitch.bench.tune import tune, write_config

    parser = argparse.ArgumentParser(prog="tierswitch tune", description="tune a policy config to a target")
    _replay_args(parser)
    parser.add_argument("--out", required=True, help="where to write the router config (YAML)")
    parser.add_argument("--model", default=None, help="directory for the fitted estimator (default: OUT.model)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the train/test split and of CV")
    parser.add_argument("--report", default=None, help="also write the tune report as JSON here")
    parser.add_argument("--router", choices=("banded", "per-tier"), default="banded",
                        help="banded: cuts over one learned score (threshold policy); per-tier: calibrated "
                             "P(right) per tier and lam for P - lam*cost (learned policy)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None,
                        help="also tune once per seed and report the held-out spread (sample sd over seeds)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    try:
        args = parser.parse_args(list(sys.argv[2:] if argv is None else argv))
    except SystemExit as exc:
        return int(exc.code or 0)
    target = parse_target(args.target)
    data, numeric = _load(args)
    if args.router == "per-tier":
        return _tune_per_tier(args, target, data, numeric)
    params = {**_params(args), **({"numeric": list(numeric)} if numeric else {})}
    result = tune(data, target, seed=args.seed, test_size=args.test_size, params=params, train_rows=args.train_rows)
    path = write_config(result, args.out, args.model)
    s = result.summary()
    h = s["heldout"]
    print(f"target: {s['target']} (met on training rows: {s['met_on_train']}, held out: {s['met_heldout']})")
    print(f"trained on {len(result.split.train)} rows, held out {len(result.split.test)} ({result.split.name})")
    print(f"cuts: {s['cuts']}")
    shares = ", ".join(f"{k} {100 * v:.1f}%" for k, v in h["shares"].items())
    print(f"held out: accuracy {h['accuracy']:.4f} ({100 * h['accuracy_vs_full']:.1f}% of full), mean cost "
          f"{h['cost']:.6g}, cost reduction {100 * h['cost_reduction']:.1f}%, shares {shares}")
    print(f"wrote {path} (estimator in {result.estimator.path_})")
    if data.skipped:
        print(f"{len(data.skipped)} row(s) skipped for missing values, e.g. row {data.skipped[0].id}: "
              f"{data.skipped[0].reason}")
    extra: dict[str, object] = {}
    if args.seeds:
        extra["seeds"] = _banded_seeds(data, target, args, params)
    if args.report:
        from tierswitch.bench.report import write_json

        write_json({**s, "split": result.split.describe(data.ids), **extra}, args.report)
    if not s["met_heldout"]:
        print("the target is not met on the held-out rows; see the figures above", file=sys.stderr)
        return 1
    return 0


def _banded_seeds(data: object, target: object, args: argparse.Namespace, params: dict[str, object]) -> object:
    """``tune --seeds`` for the banded router: one tune per seed, the held-out spread (sample sd over seeds)."""
    import numpy as np

    from tierswitch.bench.tune import tune

    seeds = args.seeds
    if not args.quiet and len(seeds) > 1:
        from tqdm import tqdm

        seeds = tqdm(seeds, desc="tune seeds", leave=False)
    runs = [tune(data, target, seed=s, test_size=args.test_size, params=params,  # type: ignore[arg-type]
                 train_rows=args.train_rows).summary() for s in seeds]
    acc = np.array([r["heldout"]["accuracy_vs_full"] for r in runs], dtype=float)
    red = np.array([r["heldout"]["cost_reduction"] for r in runs], dtype=float)

    def sd(a: np.ndarray) -> float:
        return float(a.std(ddof=1)) if len(a) > 1 else 0.0

    met = sum(bool(r["met_heldout"]) for r in runs)
    print(f"over seeds {args.seeds}: {100 * acc.mean():.1f}% ± {100 * sd(acc):.1f}% of full accuracy, cost reduction "
          f"{100 * red.mean():.1f}% ± {100 * sd(red):.1f}% (sample sd); target met held out in {met}/{len(runs)}")
    return {"seeds": list(args.seeds), "accuracy_vs_full": {"mean": float(acc.mean()), "sd": sd(acc)},
            "cost_reduction": {"mean": float(red.mean()), "sd": sd(red)}, "met_heldout": met,
            "results": [r["heldout"] for r in runs]}


def _tune_per_tier(args: argparse.Namespace, target: object, data: object, numeric: Sequence[str]) -> int:
    from tierswitch.bench.tune_per_tier import tune_per_tier, tune_per_tier_seeds, write_per_tier_config

    kwargs = {"test_size": args.test_size, "train_rows": args.train_rows, "categorical": _categorical(args),
              "numeric": list(numeric)}
    result = tune_per_tier(data, target, seed=args.seed, progress=not args.quiet, **kwargs)  # type: ignore[arg-type]
    path = write_per_tier_config(result, args.out, args.model)
    s = result.summary()
    h = s["heldout"]
    print(f"target: {s['target']} (met on training rows, out of fold: {s['met_on_train']}; held out: "
          f"{s['met_heldout']})")
    print(f"trained on {len(result.split.train)} rows, held out {h['rows']} ({result.split.name}); lam {s['lam']:.4g}")
    shares = ", ".join(f"{k} {100 * v:.1f}%" for k, v in h["shares"].items())
    print(f"held out: accuracy {h['accuracy']:.4f} ({100 * h['accuracy_vs_full']:.1f}% of full), mean cost "
          f"{h['cost']:.6g}, cost reduction {100 * h['cost_reduction']:.1f}%, shares {shares}")
    report: dict[str, object] = dict(s)
    if args.seeds:
        spread = tune_per_tier_seeds(data, target, args.seeds, progress=not args.quiet,  # type: ignore[arg-type]
                                     **kwargs)
        a, c = spread["accuracy_vs_full"], spread["cost_reduction"]
        print(f"over seeds {args.seeds}: {100 * a['mean']:.1f}% ± {100 * a['sd']:.1f}% of full accuracy, cost "
              f"reduction {100 * c['mean']:.1f}% ± {100 * c['sd']:.1f}% (sample sd); target met held out in "
              f"{spread['met_heldout']}/{len(args.seeds)}")
        report["seeds"] = spread
    print(f"wrote {path} (model in {result.model.path_})")
    if args.report:
        from tierswitch.bench.report import write_json

        write_json(report, args.report)
    return 0 if s["met_heldout"] else 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(bench_main())
