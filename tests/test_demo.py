"""``tierswitch demo`` end to end, in-process through ``demo_main(argv)``: real data, real models, a real router,
a real background distiller, real Redis when asked.

The report must be consistent with itself: accuracy and cost recomputed from the per-request log match the summary
and the table; tier shares sum to 1; every input went only to tiers that accept its modality; the student never
changed while scored inputs were answered (so nothing scored trained it); the figures are real PNGs.
"""

from __future__ import annotations

import csv
import json
from collections import Counter

import numpy as np
import pytest

from tierswitch.demo import demo_main
from tierswitch.errors import ConfigError


def _read(out):
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    with (out / "requests.csv").open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    with (out / "curve.csv").open(newline="", encoding="utf-8") as fh:
        curve = list(csv.DictReader(fh))
    return summary, rows, curve


def _check_png(path):
    import matplotlib.image as mpimg

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = mpimg.imread(path)
    assert img.shape[0] > 300 and img.shape[1] > 500
    assert img[..., :3].std() > 0.05  # not a blank canvas


def _check_consistent(summary, rows, curve, limit, figures=("frontier", "tier_share", "student_agreement")):
    assert len(rows) == summary["stream"]["requests"] == (limit or len(rows))
    limit = len(rows)
    phases = [r["phase"] for r in rows]
    n_learn = phases.count("learn")
    assert phases == ["learn"] * n_learn + ["score"] * (limit - n_learn)  # learn strictly before scoring
    scored = [r for r in rows if r["phase"] == "score"]
    table = {r["name"]: r for r in summary["table"]}
    router = table["router"]
    assert router["accuracy"] == pytest.approx(np.mean([int(r["correct"]) for r in scored]))
    assert router["accuracy"] == pytest.approx(np.mean([r["output"] == r["truth"] for r in scored]))
    assert router["mean_cost"] == pytest.approx(np.mean([float(r["cost"]) for r in scored]))
    full_cost = sum(float(r["full_cost"]) for r in rows)
    assert summary["cost_share"]["whole_stream"] == pytest.approx(sum(float(r["cost"]) for r in rows) / full_cost)
    assert router["cost_reduction"] == pytest.approx(1 - router["mean_cost"] / table["always-full"]["mean_cost"])
    for part, shares in summary["tier_share"].items():
        assert sum(shares.values()) == pytest.approx(1.0), part
    served = Counter(r["tier"] for r in scored)
    assert summary["tier_share"]["scored"] == pytest.approx({t: served.get(t, 0) / len(scored)
                                                             for t in summary["tier_share"]["scored"]})
    share_cols = [k for k in curve[0] if k.startswith("share_")]
    for point in curve:
        assert sum(float(point[k]) for k in share_cols) == pytest.approx(1.0)
    assert int(curve[-1]["requests"]) == limit
    # the result cache: only re-asked inputs hit it (the datasets hold no duplicates), and a hit costs nothing
    cached = [r for r in rows if r["cached"] == "1"]
    assert all(r["repeat"] == "1" and float(r["cost"]) == 0.0 for r in cached)
    assert len(cached) == summary["stream"]["cache_hits"] <= summary["stream"]["repeats"]
    # every input went only to tiers of its own modality
    for r in rows:
        kind = summary["tiers"][r["tier"]]["accepts"]
        assert r["modality"] in kind, (r["tier"], kind, r["modality"])
    # the student stopped learning before scoring: one version served every scored request of a modality
    for modality in {r["modality"] for r in scored}:
        assert len({r["student_version"] for r in scored if r["modality"] == modality}) == 1
    by_modality: dict[str, list[str]] = {}
    for r in rows:
        by_modality.setdefault(r["modality"], []).append(r["student_version"])
    switches = sum(sum(1 for a, b in zip(v, v[1:]) if a != b) for v in by_modality.values())
    assert summary["promotions"]["count"] == switches
    for fig in figures:
        assert fig in summary["files"]


def test_mixed_demo_small_limit_writes_a_consistent_report(demo_cache, tmp_path, capsys):
    out = tmp_path / "report"
    assert demo_main(["--workload", "mixed", "--limit", "700", "--seed", "3", "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    summary, rows, curve = _read(out)
    _check_consistent(summary, rows, curve, 700)
    assert {r["modality"] for r in rows} == {"text", "image"}
    assert summary["stream"]["cache_hits"] >= 1  # default 5% repeats
    assert summary["tiers"]["full-text"]["accepts"] == "text" and summary["tiers"]["full-image"]["accepts"] == "image"
    # both feeders see every request: each skips exactly the other modality's (uncached) learn requests, so no
    # shadow call ever sent an input to a full tier that cannot take it
    for own, other in (("text", "image"), ("image", "text")):
        feeder = summary["students"][f"distilled-{own}"]["feeder"]
        skipped = sum(1 for r in rows if r["phase"] == "learn" and r["modality"] == other and r["cached"] == "0")
        assert feeder["unaccepted"] == skipped > 0 and feeder["errors"] == 0 and feeder["samples"] > 0
    assert summary["costs"]["source"] == "table" and "price table" in summary["costs"]["unit"]
    assert "always-full" in printed and "router" in printed
    assert (out / "table.md").read_text().startswith("| ")
    for name in ("frontier.png", "tier_share.png", "student_agreement.png"):
        _check_png(out / name)
    assert "CC BY 4.0" in summary["data"]["banking77"]


def test_digits_demo_student_learns_and_router_is_cheap_and_accurate(demo_cache, tmp_path):
    """The whole digits workload (1,797 images): a quality claim on real data, so it runs in full."""
    out = tmp_path / "digits"
    assert demo_main(["--workload", "digits", "--seed", "0", "--out", str(out), "--quiet"]) == 0
    summary, rows, curve = _read(out)
    _check_consistent(summary, rows, curve, None)
    assert len(rows) - summary["stream"]["repeats"] == 1797  # every digit once, plus re-asked ones
    table = {r["name"]: r for r in summary["table"]}
    student = summary["students"]["distilled"]
    assert student["end"]["agreement"] - student["start"]["agreement"] >= 0.25
    assert summary["promotions"]["count"] >= 1
    assert table["always-full"]["accuracy"] - table["router"]["accuracy"] <= 0.015
    assert table["router"]["mean_cost"] <= 0.5 * table["always-full"]["mean_cost"]
    assert summary["cost_share"]["last_fifth"] < summary["cost_share"]["first_fifth"]
    assert table["always-base"]["accuracy"] < table["always-full"]["accuracy"] - 0.05


def test_redis_cache_is_used_and_its_namespace_removed(demo_cache, tmp_path, redis_url):
    import redis

    out = tmp_path / "redis"
    args = ["--limit", "300", "--repeats", "0.2", "--redis", redis_url, "--out", str(out), "--quiet", "--no-distill"]
    assert demo_main(args) == 0
    summary, rows, curve = _read(out)
    _check_consistent(summary, rows, curve, 300, figures=("frontier", "tier_share"))
    stream = summary["stream"]
    assert stream["cache_backend"] == "RedisCache"
    assert stream["cache"]["sets"] >= 1 and stream["cache"]["bytes_written"] > 0
    assert stream["cache_hits"] >= 10 and stream["cache"]["bytes_read"] > 0  # repeats answered from Redis
    namespace = stream["cache_namespace"]
    client = redis.Redis.from_url(redis_url)
    try:
        assert not list(client.scan_iter(match=f"{namespace}:*", count=500))
    finally:
        client.close()
    assert "always-distilled" not in {r["name"] for r in summary["table"]}  # --no-distill: no student tier
    assert not {r["tier"] for r in rows} & {"distilled"}


def test_help_and_bad_arguments(capsys):
    with pytest.raises(SystemExit) as exc:
        demo_main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--workload", "--seed", "--limit", "--redis", "--out", "--no-distill", "--quiet", "--costs"):
        assert flag in text
    with pytest.raises(ConfigError, match="demo.limit"):
        demo_main(["--limit", "5"])
    with pytest.raises(ConfigError, match="demo.repeats"):
        demo_main(["--repeats", "0.9", "--limit", "100"])
    with pytest.raises(SystemExit) as exc:
        demo_main(["--workload", "audio"])
    assert exc.value.code == 2
