"""Outputs of a benchmark report: a terminal table, JSON of the whole report, CSV of the sweep curve."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["format_table", "json_safe", "write_curve_csv", "write_json", "write_rows_csv"]


def _f(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def _pct(value: Any) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.1f}%"


def _stat(summary: Mapping[str, Any], key: str, pct: bool = False) -> str:
    s = summary[key]
    fmt = _pct if pct else _f
    return f"{fmt(s['mean'])} ± {fmt(s['std'])}" if s["n"] > 1 else fmt(s["mean"])


def format_table(report: Mapping[str, Any]) -> str:
    """A readable summary: data, tiers alone, oracle, routers (learned, length, random), the chosen point."""
    primary = report["primary"]
    tiers = report["tiers"]
    summary = report["summary"]
    n = summary["learned_apgr"]["n"]
    lines = [
        f"replay {report['source']}: {report['rows']} rows, {len(report['skipped'])} skipped (missing values), "
        f"{report['excluded']} excluded; {report['mode']}, {len(report['runs'])} run(s)",
        "",
        f"{'tier / router':<28}{'accuracy':>10}{'mean cost':>14}{'full share':>12}",
    ]
    for t in tiers:
        row = primary["tiers"][t]
        lines.append(f"{t + ' alone':<28}{_f(row['accuracy']):>10}{row['cost']:>14.6g}"
                     f"{('100.0%' if t == tiers[-1] else '0.0%'):>12}")
    o = primary["oracle"]
    lines.append(f"{'oracle (none right->cheap)':<28}{_f(o['accuracy']):>10}{o['cost']:>14.6g}"
                 f"{_pct(o['shares'][tiers[-1]]):>12}")
    if "oracle_full" in primary:
        o = primary["oracle_full"]
        lines.append(f"{'oracle (none right->full)':<28}{_f(o['accuracy']):>10}{o['cost']:>14.6g}"
                     f"{_pct(o['shares'][tiers[-1]]):>12}")
    c = primary["chosen"]
    lines.append(f"{'chosen point':<28}{_f(c['accuracy']):>10}{c['cost']:>14.6g}"
                 f"{_pct(c['shares'][tiers[-1]]):>12}")
    lines += [
        f"  (figures above: {primary['name']}; chosen for {report['target']} on training rows: held out it has "
        f"{_pct(c['accuracy_vs_full'])} of full accuracy, cost reduction {_pct(c['cost_reduction'])})",
        "",
        f"{tiers[0]} vs {tiers[-1]} (RouteLLM metrics; mean ± sample sd over {n} run(s)):",
        f"{'score':<14}{'APGR':>18}{'CPT(20%)':>20}{'CPT(50%)':>20}{'CPT(80%)':>20}",
    ]
    names = [("learned", "learned")]
    if "per_tier_apgr" in summary:
        names += [("per-tier", "per_tier"), ("tfidf+LR", "tfidf")]
    for name, key in (*names, ("length", "length"), ("random", "random")):
        lines.append(f"{name:<14}{_stat(summary, key + '_apgr'):>18}{_stat(summary, key + '_cpt20', True):>20}"
                     f"{_stat(summary, key + '_cpt50', True):>20}{_stat(summary, key + '_cpt80', True):>20}")
    lines += [
        "",
        f"cost reduction at 95% of full accuracy: {_stat(summary, 'cost_reduction_at_95', True)}; "
        f"at 99%: {_stat(summary, 'cost_reduction_at_99', True)} (best sweep point on the held-out rows)",
        f"chosen point held out (cuts picked on training rows only): {_stat(summary, 'chosen_accuracy_vs_full', True)}"
        f" of full accuracy, cost reduction {_stat(summary, 'chosen_cost_reduction', True)}",
    ]
    if "per_tier_apgr" in summary:
        lines += ["", "cost / full-tier cost at a share of full accuracy (best point on the held-out rows; "
                  "mean ± sample sd):",
                  f"{'router':<28}{'95%':>18}{'97%':>18}{'99%':>18}"]
        for name, key in (("per-tier (P - lam*cost)", "per_tier"), ("tfidf+LR (P - lam*cost)", "tfidf"),
                          ("banded single score", "banded")):
            lines.append(f"{name:<28}" + "".join(f"{_stat(summary, f'{key}_cost_vs_full_at_{f}', True):>18}"
                                                  for f in ("0.95", "0.97", "0.99")))
        tier_shares = ", ".join(f"{t} {_stat(summary, f'per_tier_chosen_share_{t}', True)}" for t in tiers)
        lines.append(f"per-tier tuned on training rows (lam by out-of-fold CV): "
                     f"{_stat(summary, 'per_tier_chosen_accuracy_vs_full', True)} of full accuracy, cost reduction "
                     f"{_stat(summary, 'per_tier_chosen_cost_reduction', True)}; shares {tier_shares}")
    groups = report["runs"][0].get("groups", {}).get("per_tier") if report["runs"] else None
    if groups:
        lines += ["", f"per group (per-tier router, {primary['name']}):",
                  f"{'group':<20}{'rows':>6}{'accuracy':>10}{'full acc':>10}{'mean cost':>12}  shares"]
        for g, r in groups.items():
            sh = ", ".join(f"{t} {_pct(v)}" for t, v in r["shares"].items())
            lines.append(f"{g[:19]:<20}{r['rows']:>6}{_f(r['accuracy']):>10}{_f(r['full_accuracy']):>10}"
                         f"{r['cost']:>12.6g}  {sh}")
    return "\n".join(lines)


def write_rows_csv(report: Mapping[str, Any], path: str | Path) -> Path:
    """Per-row scores and decisions of the primary run: id, split, group, banded score and tier, per-tier
    probabilities (model and TF-IDF baseline) and the per-tier router's tier."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tiers = report["tiers"]
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "split", "group", "score", "banded_tier", *(f"p_{t}" for t in tiers),
                         *(f"tfidf_p_{t}" for t in tiers), "per_tier_tier"])
        for r in report.get("rows_primary", []):
            writer.writerow([r["id"], r["split"], r["group"], r["score"], r["banded_tier"],
                             *(r["p_right"][t] for t in tiers), *(r["tfidf_p_right"][t] for t in tiers),
                             r["per_tier_tier"]])
    return path


def write_json(report: Mapping[str, Any], path: str | Path) -> Path:
    """The whole report (including which rows trained which model) as JSON; NaN becomes null."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(json_safe(report), indent=1, allow_nan=False), encoding="utf-8")
    return path


def write_curve_csv(report: Mapping[str, Any], path: str | Path) -> Path:
    """One row per sweep point of the primary run: cuts, accuracy, cost, each tier's share, and whether the point
    is on the Pareto frontier."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    primary = report["primary"]
    tiers = report["tiers"]
    frontier = {(tuple(p["cuts"]), p["cost"]) for p in primary["pareto"]}
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow([*(f"cut_{i + 1}" for i in range(len(tiers) - 1)), "accuracy", "cost",
                         *(f"share_{t}" for t in tiers), "pareto"])
        for p in primary["sweep"]:
            writer.writerow([*p["cuts"], p["accuracy"], p["cost"], *(p["shares"][t] for t in tiers),
                             int((tuple(p["cuts"]), p["cost"]) in frontier)])
    return path


def json_safe(obj: Any) -> Any:
    """``obj`` as plain JSON data: NaN/inf become None, mappings get string keys, tuples become lists, numpy
    arrays and scalars plain lists and numbers."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if hasattr(obj, "tolist"):
        return json_safe(obj.tolist())
    return obj
