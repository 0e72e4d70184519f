"""``tierswitch demo``: adaptive tier switching on real data, end to end, with a report folder at the end."""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tierswitch.demo.tiers import COST_SOURCES, PRICE_TABLE
from tierswitch.demo.workloads import WORKLOADS

__all__ = ["build_parser", "demo_main", "run_demo"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tierswitch demo",
        description=(
            "Adaptive tier switching on real data, end to end: trains a cheap 'base' and a strong 'full' model "
            "(cached in $TIERSWITCH_CACHE_DIR, else $XDG_CACHE_HOME/tierswitch or ~/.cache/tierswitch), starts an "
            "untrained 'distilled' student, streams traffic through a Router with a cascade policy while the "
            "student learns online from the full tier's answers, then scores held-out inputs and writes a report."
        ),
    )
    parser.add_argument("--workload", choices=WORKLOADS, default="text",
                        help="text: BANKING77 intents (77 classes, shipped with tierswitch); digits: scikit-learn's "
                             "8x8 digit images; mixed: both interleaved in one router whose tiers accept one "
                             "modality each (default: text)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed for the traffic order, the student's initial weights and shadow sampling "
                             "(default: 0)")
    parser.add_argument("--limit", type=int, default=None,
                        help="cap the stream at this many requests (learn and scored parts keep their proportions); "
                             "default: the whole dataset")
    parser.add_argument("--repeats", type=float, default=0.05, metavar="SHARE",
                        help="share of requests that re-ask a recent input of the same phase, as real users do; "
                             "the result cache answers them at no cost (default: 0.05; 0 disables)")
    parser.add_argument("--redis", metavar="URL", default=None,
                        help="cache results in Redis at URL (e.g. redis://127.0.0.1:6379/0) under a fresh namespace "
                             "that is deleted at the end; default: the in-memory cache")
    parser.add_argument("--out", type=Path, default=Path("tierswitch-demo"),
                        help="report folder: summary.json, curve.csv, requests.csv (one row per request), table.md "
                             "and PNG figures (default: ./tierswitch-demo)")
    parser.add_argument("--costs", choices=COST_SOURCES, default="table",
                        help=f"table: a stated price table in credits per request (base {PRICE_TABLE['base']:g}, "
                             f"distilled {PRICE_TABLE['distilled']:g}, full {PRICE_TABLE['full']:g}); measured: each "
                             "tier's median single-request latency in µs, measured at start-up on learn inputs (on a "
                             "CPU the torch student is no faster than the sparse full model, so expect no saving: "
                             "use it to see real latencies) (default: table)")
    parser.add_argument("--no-distill", action="store_true",
                        help="no student: the cascade goes from base straight to full (the baseline to beat)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar and no narration; print the table only")
    return parser


class _Progress:
    """A tqdm bar with running accuracy (scored inputs), cost as a share of always-full, tier mix and the
    student's latest probe agreement."""

    def __init__(self, total: int, quiet: bool) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=total, unit="req", disable=quiet, file=sys.stderr, dynamic_ncols=True,
                        desc="learn", leave=True)
        self.cost = self.full_cost = 0.0
        self.correct = self.scored = 0
        self.mix: Counter[str] = Counter()

    def __call__(self, row: dict[str, Any], log: Any) -> None:
        self.cost += row["cost"]
        self.full_cost += row["full_cost"]
        self.mix[row["tier"].split("-")[0]] += 1
        if row["phase"] == "score":
            self.scored += 1
            self.correct += row["correct"]
            if self.scored == 1:
                self.bar.set_description("score")
        self.bar.update(1)
        if row["i"] % 50 == 0:
            n = sum(self.mix.values())
            mix = "/".join(f"{self.mix[r] / n:.0%}" for r in ("base", "distilled", "full"))
            agree = [v for k, v in (log.curve[-1] if log.curve else {}).items() if k.startswith("agreement_")]
            acc = f"{self.correct / self.scored:.1%}" if self.scored else "-"
            self.bar.set_postfix_str(
                f"acc {acc} cost {self.cost / max(self.full_cost, 1e-12):.0%} of full, b/d/f {mix}, "
                f"student agrees {np.mean(agree):.0%}" if agree else f"acc {acc}", refresh=False)

    def close(self) -> None:
        self.bar.close()


def run_demo(args: argparse.Namespace) -> dict[str, Any]:
    """Run the demo described by parsed ``args``; returns the summary (also written to ``args.out``)."""
    from threadpoolctl import threadpool_limits  # ships with scikit-learn

    # Serving, feeding and training share the machine's cores through threads: one BLAS thread each avoids
    # OpenBLAS's spinning workers fighting them (10x slowdowns on a busy 2-core machine).
    with threadpool_limits(limits=1, user_api="blas"):
        return _run_demo(args)


def _run_demo(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from tierswitch.demo.assemble import assemble
    from tierswitch.demo.store import ModelStore
    from tierswitch.demo.workloads import build_workload

    def say(*parts: object) -> None:
        if not args.quiet:
            print(*parts, flush=True)

    torch.set_num_threads(1)  # serving on one core; the trainer thread takes its own
    started = time.perf_counter()
    _mkdir(args.out)  # fail on an unwritable --out before minutes of work, not after
    store = ModelStore()
    say(f"tierswitch demo: workload {args.workload}, seed {args.seed}; trained tiers cached in {store.root}")
    workload = build_workload(args.workload, store, seed=args.seed, limit=args.limit, repeats=args.repeats)
    setup_s = time.perf_counter() - started
    for fam in workload.families:
        for role, trained in (("base", fam.base), ("full", fam.full)):
            how = "loaded from cache" if trained.cached else f"trained in {trained.train_s:.1f}s"
            say(f"  {fam.names[role]:<15} {fam.describe[role]}; {trained.train_inputs} labelled inputs, {how}")
        if not args.no_distill:
            say(f"  {fam.names['distilled']:<15} {fam.describe['distilled']}")
    asm = assemble(workload, seed=args.seed, cost_source=args.costs, redis_url=args.redis,
                   distill=not args.no_distill)
    say("  costs: " + ", ".join(f"{k} {v:g}" for k, v in asm.prices.items()) + f" [{asm.cost_unit}]")
    n_learn = workload.learn_count
    learns = "the student learns from the full tier's answers" if asm.distillers else "no student (--no-distill)"
    rep = Counter(it.phase for it in workload.items if it.repeat)
    say(f"stream: {n_learn} unlabelled learn requests (the train split, {rep['learn']} of them re-asked; {learns}), "
        f"then {len(workload.items) - n_learn} scored requests (the test split, {rep['score']} re-asked; no tier "
        "ever trains on them)")
    try:
        return _stream_and_report(args, workload, asm, store, say, started, setup_s)
    finally:
        if asm.redis_namespace is not None:
            _drop_namespace(asm, say)
            asm.cache.close()  # type: ignore[attr-defined]  # the RedisCache's connections, whatever happened


def _drop_namespace(asm: Any, say: Any) -> None:
    from tierswitch.errors import CacheError

    try:
        asm.cache.clear()
    except CacheError as exc:  # Redis went away: the keys expire by their TTL anyway
        say(f"could not delete Redis namespace {asm.redis_namespace} ({exc}); its keys expire within an hour")


def _stream_and_report(args: argparse.Namespace, workload: Any, asm: Any, store: Any, say: Any, started: float,
                       setup_s: float) -> dict[str, Any]:
    from tierswitch.demo import summary as summarize
    from tierswitch.demo.evaluate import compare, cost_shares, scored_probs
    from tierswitch.demo.plots import cascade_sweep, plot_all
    from tierswitch.demo.report import promotion_points, write_report
    from tierswitch.demo.stream import run_stream

    progress = _Progress(len(workload.items), args.quiet)
    try:
        log = run_stream(workload, asm, seed=args.seed, on_request=progress)
    finally:
        progress.close()
    n_learn = workload.learn_count
    unit = asm.cost_unit
    probs = scored_probs(workload, asm)
    table = [r.to_dict() for r in compare(workload, asm, log, store, probs)]
    prices = {role: np.array([asm.prices[workload.families[it.family].names[role]] for it in workload.items
                              if it.phase == "score"]) for role in ("base", "distilled", "full")}
    sweep = cascade_sweep(probs, prices) if asm.distillers else []
    promotions = promotion_points(log)
    summary = summarize.build_summary(args, workload, asm, log, table, cost_shares(log), promotions, unit,
                                      setup_s=setup_s, total_s=time.perf_counter() - started)
    figures = plot_all(args.out, table=table, sweep=sweep, unit=unit.split(" (")[0], curve=log.curve,
                       tiers=asm.router.tier_order,
                       students=[f.names["distilled"] for f in workload.families] if asm.distillers else [],
                       learn_end=n_learn, promotions=promotions, start=log.probe_start)
    summary["total_s"] = time.perf_counter() - started
    write_report(args.out, summary, log, figures)
    return summary


def _mkdir(path: Path) -> bool:
    from tierswitch.errors import ConfigError

    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError("demo.out", f"cannot create the report folder {path} ({exc}); pass --out DIR") from exc
    return True


def demo_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``tierswitch demo``; returns the exit code (0 when the run completed)."""
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    from tierswitch.errors import ConfigError

    if args.limit is not None and args.limit < 20:
        raise ConfigError("demo.limit", f"must be at least 20 requests, got {args.limit}")
    if not 0.0 <= args.repeats <= 0.5:
        raise ConfigError("demo.repeats", f"must be a share in [0, 0.5], got {args.repeats}")
    from tierswitch.demo.summary import describe_run

    if args.redis:
        _check_redis(args.redis)  # before minutes of work: an unreachable server is one named line, exit 1
    summary = run_demo(args)
    print(describe_run(summary, quiet=args.quiet))
    errors = summary["stream"]["cache"].get("errors", 0)
    if errors:  # Redis went away during the run: every request still answered, but say so and fail the run
        print(f"warning: {errors} result-cache errors ({summary['stream']['cache_backend']}): those requests were "
              "cache misses and their results were not stored; check the Redis server", file=sys.stderr)
        return 1
    return 0


def _check_redis(url: str) -> None:
    import redis

    from tierswitch.cache.redis_conn import redact_url
    from tierswitch.errors import CacheError, ConfigError

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
    except ValueError as exc:
        raise ConfigError("demo.redis", f"{exc}; pass a URL such as redis://127.0.0.1:6379/0") from exc
    try:
        client.ping()
    except redis.RedisError as exc:
        raise CacheError(f"cannot use Redis at {redact_url(url)} ({type(exc).__name__}: {exc}); start it, or run "
                         "the demo without --redis") from exc
    finally:
        client.close()
