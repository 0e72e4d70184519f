"""The report folder: ``summary.json``, ``curve.csv``, ``requests.csv`` (the per-request log), ``table.md`` and the
figures, plus the text table printed at the end of a run."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tierswitch.bench.report import json_safe
from tierswitch.demo.stream import REQUEST_FIELDS, StreamLog
from tierswitch.errors import ConfigError

__all__ = ["format_table", "promotion_points", "write_report"]

TABLE_COLUMNS = ("", "accuracy", "mean cost", "cost reduction", "latency p50", "latency p99", "memory", "model size")


def _bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def _us(v: float) -> str:
    return f"{v / 1000:.2f} ms" if v >= 1000 else f"{v:.0f} µs"


def format_table(table: Sequence[dict[str, Any]], markdown: bool = False) -> str:
    """The comparison table as aligned text (or a Markdown table)."""
    body = [
        [r["name"], f"{r['accuracy'] * 100:.1f}%", f"{r['mean_cost']:.2f}", f"{r['cost_reduction'] * 100:.0f}%",
         _us(r["p50_us"]), _us(r["p99_us"]), _bytes(r["memory_bytes"]), _bytes(r["size_bytes"])]
        for r in table
    ]
    if markdown:
        lines = ["| " + " | ".join(TABLE_COLUMNS) + " |", "|" + "---|" * len(TABLE_COLUMNS)]
        lines += ["| " + " | ".join(row) + " |" for row in body]
        return "\n".join(lines)
    widths = [max(len(str(x)) for x in col) for col in zip(TABLE_COLUMNS, *body)]
    return "\n".join(
        "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
        for row in [TABLE_COLUMNS, *body]
    )


def promotion_points(log: StreamLog, family_of_tier: dict[str, int] | None = None) -> list[int]:
    """Request indices at which a newly promoted student first served (from the per-request log)."""
    last: dict[str, str] = {}
    points = []
    for row in log.rows:
        key = row["modality"]
        version = row["student_version"]
        if key in last and version != last[key]:
            points.append(row["i"])
        last[key] = version
    return points


def _write_csv(path: Path, rows: Sequence[dict[str, Any]], fields: Sequence[str]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(fields), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in fields})


def write_report(out: Path, summary: dict[str, Any], log: StreamLog, figures: dict[str, str] | None = None) -> Path:
    """Write the report files into ``out`` (created if needed); returns ``out``."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError("demo.out", f"cannot create the report folder {out} ({exc}); pass --out DIR") from exc
    _write_csv(out / "requests.csv", log.rows, REQUEST_FIELDS)
    curve_fields = list(log.curve[0]) if log.curve else []
    _write_csv(out / "curve.csv", log.curve, curve_fields)
    (out / "table.md").write_text(format_table(summary["table"], markdown=True) + "\n", encoding="utf-8")
    body = dict(summary)
    body["files"] = {"summary": "summary.json", "curve": "curve.csv", "requests": "requests.csv", "table": "table.md",
                     **(figures or {})}
    (out / "summary.json").write_text(json.dumps(json_safe(body), indent=2, ensure_ascii=False) + "\n",
                                      encoding="utf-8")
    return out
