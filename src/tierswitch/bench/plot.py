"""The benchmark's PNG: accuracy against mean cost (sweep, Pareto frontier, tiers alone, random routing, oracle,
chosen point) and accuracy against full-tier share (the RouteLLM curve). matplotlib is imported here only, with the
non-interactive Agg backend, so nothing opens a window and ``import tierswitch.bench`` stays light."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["plot_report"]


def plot_report(report: Mapping[str, Any], path: str | Path, title: str | None = None) -> Path:
    """Draw the primary run of ``report`` (from ``run_replay``) to ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    primary = report["primary"]
    tiers = report["tiers"]
    full = tiers[-1]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(13, 5.2))
    try:
        sweep = primary["sweep"]
        ax.scatter([p["cost"] for p in sweep], [p["accuracy"] for p in sweep], s=8, color="#bbbbbb",
                   label="threshold sweep points", zorder=1)
        front = primary["pareto"]
        ax.plot([p["cost"] for p in front], [p["accuracy"] for p in front], "-o", ms=3, color="#1f77b4",
                label="learned router: Pareto frontier", zorder=3)
        ax.plot([p["random_cost"] for p in front], [p["random_accuracy"] for p in front], "--", color="#7f7f7f",
                label="random routing, same tier shares (mean of seeds)", zorder=2)
        middle = ["#9467bd", "#8c564b", "#e377c2", "#17becf"]
        for i, t in enumerate(tiers):
            row = primary["tiers"][t]
            colour = "#2ca02c" if i == 0 else "#d62728" if t == full else middle[(i - 1) % len(middle)]
            ax.scatter([row["cost"]], [row["accuracy"]], marker="s", s=70, zorder=4, color=colour, label=f"{t} alone")
        o = primary["oracle"]
        ax.scatter([o["cost"]], [o["accuracy"]], marker="*", s=220, color="#ff7f0e", zorder=5, label="oracle")
        c = primary["chosen"]
        ax.scatter([c["cost"]], [c["accuracy"]], marker="D", s=110, facecolors="none", edgecolors="black",
                   linewidths=2, zorder=6,
                   label=f"chosen: {report['target']}\n(acc {c['accuracy']:.3f}, "
                         f"cost -{100 * c['cost_reduction']:.0f}%)")
        ax.set_xlabel("mean cost per request")
        ax.set_ylabel("accuracy")
        ax.set_title("accuracy vs cost (held-out rows)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")

        rl = primary["routellm"]["curve"]
        weak_acc, strong_acc = primary["tiers"][tiers[0]]["accuracy"], primary["tiers"][full]["accuracy"]
        share = [100 * s for s in rl["strong_share"]]
        apgr = primary["routellm"]["apgr"]
        ax2.plot(share, rl["accuracy"], "-o", ms=4, color="#1f77b4", label=f"learned router (APGR {apgr:.3f})")
        ax2.plot([0, 100], [weak_acc, strong_acc], "--", color="#7f7f7f",
                 label=f"random (APGR {primary['random']['apgr']:.3f}, mean of seeds)")
        pair_only = len(tiers) == 2  # with middle tiers, the oracle and the chosen point are not on this curve
        if pair_only:
            oracle_share = 100 * primary["oracle"]["shares"][full]
            ax2.plot([0, oracle_share, 100], [weak_acc, primary["oracle"]["accuracy"], primary["oracle"]["accuracy"]],
                     ":", color="#ff7f0e", label="oracle")
        ax2.axhline(weak_acc, color="#2ca02c", lw=1, label=f"{tiers[0]} alone")
        ax2.axhline(strong_acc, color="#d62728", lw=1, label=f"{full} alone")
        if pair_only:
            ax2.scatter([100 * c["shares"][full]], [c["accuracy"]], marker="D", s=110, facecolors="none",
                        edgecolors="black", linewidths=2, zorder=6, label="chosen point")
        ax2.set_xlabel(f"{full} calls (%)")
        ax2.set_ylabel("accuracy")
        ax2.set_title(f"{tiers[0]} vs {full}: RouteLLM curve (score deciles)"
                      + ("" if pair_only else f"\n(the two end tiers only; {len(tiers) - 2} middle tier(s) left out)"))
        ax2.grid(alpha=0.3)
        ax2.legend(fontsize=8, loc="lower right")
        fig.suptitle(title or f"{Path(report['source']).name}: {primary['name']} ({primary['rows']} held-out rows)")
        fig.tight_layout()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)
    return path
