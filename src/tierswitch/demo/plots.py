"""The report's figures (matplotlib with the Agg backend, imported only when a report is written)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["cascade_sweep", "plot_all"]

_COLORS = {"base": "#4C72B0", "distilled": "#55A868", "full": "#C44E52"}
_LIGHT = {"base": "#A6BCE0", "distilled": "#A9D8B4", "full": "#E6A5A7"}  # a second modality's tiers
_STUDENT_COLORS = ("#1F5FA8", "#B8401A", "#6B3FA0")


def _role(name: str) -> str:
    return name.split("-")[0]


def cascade_sweep(probs: dict[str, Any], prices_per_item: dict[str, np.ndarray]) -> list[tuple[float, float]]:
    """(mean cost, accuracy) of the cascade at a grid of (base, distilled) thresholds, replayed offline from each
    tier's answers on the scored inputs with the final student; returns the Pareto-efficient points."""
    c, conf = probs["correct"], probs["confidence"]
    points = []
    grid = np.linspace(0.0, 1.0, 21)
    for tb in grid:
        take_b = conf["base"] >= tb
        for td in grid:
            take_d = ~take_b & (conf["distilled"] >= td)
            take_f = ~take_b & ~take_d
            acc = np.mean((c["base"] & take_b) | (c["distilled"] & take_d) | (c["full"] & take_f))
            cost = np.mean(prices_per_item["base"] + ~take_b * (prices_per_item["distilled"]
                                                               + take_f * prices_per_item["full"]))
            points.append((float(cost), float(acc)))
    points.sort()
    frontier, best = [], -1.0
    for cost, acc in points:
        if acc > best:
            frontier.append((cost, acc))
            best = acc
    return frontier


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_frontier(path: Path, table: Sequence[dict[str, Any]], sweep: list[tuple[float, float]], unit: str) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.6), dpi=110)
    if sweep:
        xs, ys = zip(*sweep)
        ax.plot(xs, [y * 100 for y in ys], "-", color="0.6", lw=1.2, zorder=1,
                label="cascade at other thresholds (offline, final student)")
    singles = [r for r in table if r["name"].startswith("always-")]
    for r in singles:
        role = r["name"].removeprefix("always-")
        ax.scatter(r["mean_cost"], r["accuracy"] * 100, s=70, color=_COLORS.get(role, "k"), zorder=3,
                   label=r["name"])
    router = next(r for r in table if r["name"] == "router")
    ax.scatter(router["mean_cost"], router["accuracy"] * 100, s=220, marker="*", color="#8172B2", zorder=4,
               label=f"router, live ({router['cost_reduction']:.0%} cheaper than always-full)")
    ax.set_xlabel(f"mean cost per request ({unit})")
    ax.set_ylabel("accuracy on scored inputs (%)")
    ax.set_title("Cost vs accuracy on the scored (held-out) inputs")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _boundary(ax: Any, curve: Sequence[dict[str, Any]], learn_end: int) -> None:
    if 0 < learn_end < curve[-1]["requests"]:
        ax.axvline(learn_end, color="k", ls=":", lw=1.2, label="learn traffic ends, scored inputs start")


def _window_starts(curve: Sequence[dict[str, Any]]) -> np.ndarray:
    """Each window's first request index, plus the stream's end (for step plots over whole windows)."""
    ends = [p["requests"] for p in curve]
    return np.array([0, *ends])


def plot_tier_share(path: Path, curve: Sequence[dict[str, Any]], tiers: Sequence[str], learn_end: int) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8.4, 4.4), dpi=110)
    x = _window_starts(curve)
    shares = np.array([[p[f"share_{t}"] for t in tiers] for p in [*curve, curve[-1]]]).T
    colors = [(_LIGHT if t.endswith("-image") else _COLORS).get(_role(t), "0.5") for t in tiers]
    ax.stackplot(x, shares * 100, labels=list(tiers), colors=colors, step="post")
    cost = np.array([p["window_cost"] / p["window_full_cost"] for p in [*curve, curve[-1]]]) * 100
    ax.plot(x, cost, color="k", lw=1.6, drawstyle="steps-post", label="router cost, % of always-full")
    ax.set_ylim(0, 100)
    ax.set_xlim(0, x[-1])
    ax.set_xlabel("requests")
    ax.set_ylabel("share of requests answered by each tier (%)")
    ax.set_title("Which tier answered, over time (per window)")
    _boundary(ax, curve, learn_end)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_agreement(path: Path, curve: Sequence[dict[str, Any]], students: Sequence[str], learn_end: int,
                   promotions: Sequence[int], start: Sequence[dict[str, Any]]) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.2, 4.6), dpi=110)
    x = np.array([0] + [p["requests"] for p in curve])
    for i, s in enumerate(students):
        color = _STUDENT_COLORS[i % len(_STUDENT_COLORS)]
        agree = [start[i]["agreement"]] + [p[f"agreement_{s}"] for p in curve]
        acc = [start[i]["accuracy"]] + [p[f"accuracy_{s}"] for p in curve]
        ax.plot(x, np.array(agree) * 100, lw=2, color=color, label=f"{s}: agreement with full (probe)")
        ax.plot(x, np.array(acc) * 100, lw=1.2, ls="--", color=color, label=f"{s}: accuracy (probe)")
        live = np.array([np.nan] + [p[f"live_agreement_{s}"] for p in curve]) * 100
        if np.isfinite(live).any():
            ax.plot(x, live, lw=1, ls=":", color=color, label=f"{s}: live agreement (shadow samples)")
    for i, at in enumerate(promotions):
        ax.axvline(at, color="#55A868", alpha=0.35, lw=1, label="a promoted student starts serving" if i == 0 else None)
    ax.set_ylim(0, 102)
    ax.set_xlabel("requests")
    ax.set_ylabel("%")
    ax.set_title("The student learns from the full tier's answers")
    _boundary(ax, curve, learn_end)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_all(out: Path, *, table: Sequence[dict[str, Any]], sweep: list[tuple[float, float]], unit: str,
             curve: Sequence[dict[str, Any]], tiers: Sequence[str], students: Sequence[str], learn_end: int,
             promotions: Sequence[int], start: Sequence[dict[str, Any]]) -> dict[str, str]:
    """Write the three figures into ``out``; returns name -> file name."""
    files = {"frontier": "frontier.png", "tier_share": "tier_share.png", "student_agreement": "student_agreement.png"}
    plot_frontier(out / files["frontier"], table, sweep, unit)
    plot_tier_share(out / files["tier_share"], curve, tiers, learn_end)
    if students:
        plot_agreement(out / files["student_agreement"], curve, students, learn_end, promotions, start)
    else:
        del files["student_agreement"]
    return files
