"""Online distillation with free-running traffic: the demo's stream (no pauses: a tight loop of requests) with the
library's defaults, per seed, on BANKING77 (text) and digits; plus serving latency with the worker process
training beside it against idle.

    PYTHONPATH=src python benchmarks/bench_distill_stream.py --seeds 0 1 2 3 4 --out /tmp/bench-distill

Prints one JSON line per run and a Markdown table at the end. Targets (issue 16): first promotion within the first
third of the stream; last-fifth full-tier share <= half the first fifth's; student accuracy >= 90% of the teacher's
(held-out split); distilled p50 <= 0.5x full p50 (same run); serving p50 with training on <= 1.1x idle.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any


def run_one(workload: str, seed: int, out: Path) -> dict[str, Any]:
    from tierswitch.demo.main import build_parser, run_demo

    folder = out / f"{workload}-{seed}"
    args = build_parser().parse_args(["--workload", workload, "--seed", str(seed), "--out", str(folder), "--quiet"])
    started = time.perf_counter()
    if (folder / "summary.json").exists() and (folder / "requests.csv").exists():  # resume a run already done
        summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    else:
        summary = run_demo(args)
    with (folder / "requests.csv").open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    n = len(rows)
    versions = [r["student_version"] for r in rows]
    first = next((i for i in range(1, n) if versions[i] != versions[i - 1]), None)
    fifth = max(1, n // 5)
    full_name = "full"

    def full_share(part: list[dict[str, str]]) -> float:
        return sum(r["tier"] == full_name for r in part) / len(part)

    table = {r["name"]: r for r in summary["table"]}
    student = summary["students"]["distilled"]
    res = {
        "workload": workload, "seed": seed, "requests": n, "stream_s": summary["stream"]["wall_s"],
        "first_promotion_at": first, "first_promotion_share": None if first is None else first / n,
        "promotions": summary["promotions"]["count"],
        "full_share_first_fifth": full_share(rows[:fifth]), "full_share_last_fifth": full_share(rows[-fifth:]),
        "student_acc": table["always-distilled"]["accuracy"], "teacher_acc": table["always-full"]["accuracy"],
        "agreement_start": student["start"]["agreement"], "agreement_end": student["end"]["agreement"],
        "distilled_p50_us": table["always-distilled"]["p50_us"],
        "full_p50_us": table["always-full"]["p50_us"],
        "router_accuracy": table["router"]["accuracy"], "router_cost_reduction": table["router"]["cost_reduction"],
        "trainer": {k: student["distiller"].get(k) for k in ("trained", "steps", "replay_steps", "dropped",
                                                             "backlog_warning")},
        "wall_s": time.perf_counter() - started,
    }
    res["acc_ratio"] = res["student_acc"] / res["teacher_acc"]
    res["latency_ratio"] = res["distilled_p50_us"] / res["full_p50_us"]
    res["share_ratio"] = res["full_share_last_fifth"] / max(res["full_share_first_fifth"], 1e-9)
    return res


def serving_overhead(n: int = 3000) -> dict[str, float]:
    """p50 of the full text tier's predict_one: idle, then with the worker process training flat out."""
    import numpy as np

    from tierswitch.demo.store import ModelStore
    from tierswitch.demo.tiers import ModelTier
    from tierswitch.demo.workloads import build_workload
    from tierswitch.distill import DistillConfig, Sample
    from tierswitch.distill.process import ProcessTrainer
    from tierswitch.distill.student import student_tier

    wl = build_workload("text", ModelStore(), seed=0)
    fam = wl.families[0]
    full = ModelTier("full", fam.full.model, fam.data.classes)
    xs = [fam.data.test_x[i % len(fam.data.test_x)] for i in range(n)]

    def p50() -> float:
        times = []
        for x in xs:
            t0 = time.perf_counter()
            full.predict_one(x)
            times.append(time.perf_counter() - t0)
        return statistics.median(times) * 1e6

    p50()  # warm-up
    idle = p50()
    tier = student_tier(fam.student_spec, cost=2.0)
    trainer = ProcessTrainer(tier, DistillConfig(idle_replay=100, replay_ratio=4.0)).start()
    try:
        probs = fam.full.model.proba(fam.data.train_x[:4000])
        trainer.put_many(Sample(teacher=p.astype(np.float32), label=int(p.argmax()), raw=x, meta={"t": time.time()})
                         for x, p in zip(fam.data.train_x[:4000], probs))
        deadline = time.monotonic() + 60
        while trainer.stats.get("steps", 0) < 5 and time.monotonic() < deadline:
            time.sleep(0.05)  # polling a real condition (the worker is training) with a deadline
        busy = p50()
        steps = trainer.stats.get("steps", 0) + trainer.stats.get("replay_steps", 0)
    finally:
        trainer.stop()
    idle_after = p50()
    return {"idle_p50_us": idle, "training_p50_us": busy, "idle_after_p50_us": idle_after,
            "ratio": busy / statistics.mean([idle, idle_after]), "worker_steps_seen": steps}


def compression_effect(n_train: int = 6000, epochs: int = 2) -> list[dict[str, Any]]:
    """BANKING77: a text student trained (synchronously, seed 0) on the full tier's answers, then served float
    (numpy), INT8 (torch dynamic quantization), pruned 50% (numpy) and pruned+INT8: agreement with the full tier
    and accuracy on the test split, served predict_one p50 and size."""
    import numpy as np

    from tierswitch.demo.store import ModelStore
    from tierswitch.demo.workloads import build_workload
    from tierswitch.distill import DistillConfig, MemoryBuffer, Sample
    from tierswitch.distill.compress import module_bytes, prune_hidden, quantize_int8
    from tierswitch.distill.student import student_tier
    from tierswitch.distill.trainer import Distiller

    fam = build_workload("text", ModelStore(), seed=0).families[0]
    spec = fam.student_spec
    tier = student_tier(spec, cost=2.0)
    buf = MemoryBuffer(capacity=100_000)
    d = Distiller(tier, buf, DistillConfig(seed=0))
    order = np.random.default_rng(0).permutation(len(fam.data.train_x))[:n_train]  # the split is sorted by class
    xs = [fam.data.train_x[i] for i in order]
    probs = fam.full.model.proba(xs)
    for _ in range(epochs):
        buf.put_many(Sample(teacher=p.astype(np.float32), label=int(p.argmax()), raw=x) for x, p in zip(xs, probs))
        while d.step():
            d.replay_step()
    model = copy.deepcopy(tier.module).eval()  # the student the gate promoted last (what serves)
    test_x, test_y = fam.data.test_x, fam.data.test_y
    teacher = fam.full.model.proba(test_x).argmax(1)
    pruned, pspec = prune_hidden(model, spec, 0.5)
    out = []
    for name, module, s in (("float (numpy)", model, spec), ("int8 (torch)", quantize_int8(model), spec),
                            ("pruned 50% (numpy)", pruned, pspec), ("pruned 50% + int8", quantize_int8(pruned), pspec)):
        t = student_tier(spec, cost=2.0)
        t.swap_student(module, s, name)
        preds = np.array([fam.data.classes.index(p.output) for p in t.predict(test_x)])
        lat = []
        for x in test_x[:2000]:
            t0 = time.perf_counter()
            t.predict_one(x)
            lat.append(time.perf_counter() - t0)
        out.append({"variant": name, "agreement": float(np.mean(preds == teacher)),
                    "accuracy": float(np.mean(preds == test_y)), "p50_us": statistics.median(lat) * 1e6,
                    "bytes": module_bytes(module)})
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--workloads", nargs="+", default=["text", "digits"])
    p.add_argument("--out", type=Path, default=Path("/tmp/bench-distill"))
    p.add_argument("--no-serving", action="store_true")
    p.add_argument("--compression", action="store_true", help="only the INT8/pruning effect on BANKING77")
    args = p.parse_args(argv)
    if args.compression:
        for row in compression_effect():
            print(json.dumps(row), flush=True)
        return 0
    results = []
    for workload in args.workloads:
        for seed in args.seeds:
            res = run_one(workload, seed, args.out)
            results.append(res)
            print(json.dumps(res), flush=True)
    if not args.no_serving:
        print(json.dumps({"serving": serving_overhead()}), flush=True)
    print("\n| workload | seed | first promotion (share of stream) | full share first/last fifth | student/teacher acc "
          "| agreement start->end | distilled/full p50 µs |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        share = r["first_promotion_share"]
        fp = "never" if share is None else f"{r['first_promotion_at']} ({share:.0%})"
        print(f"| {r['workload']} | {r['seed']} | {fp} | {r['full_share_first_fifth']:.0%} / "
              f"{r['full_share_last_fifth']:.0%} | {r['student_acc']:.1%} / {r['teacher_acc']:.1%} "
              f"({r['acc_ratio']:.0%}) | {r['agreement_start']:.0%} -> {r['agreement_end']:.0%} | "
              f"{r['distilled_p50_us']:.0f} / {r['full_p50_us']:.0f} ({r['latency_ratio']:.2f}x) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
