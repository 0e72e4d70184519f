"""The live benchmark: real scikit-learn tiers trained on BANKING77, and a router over them."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest

from tierswitch.bench.cli import bench_main
from tierswitch.bench.live import model_size, run_live
from tierswitch.bench.live_config import load_live_config
from tierswitch.errors import ConfigError
from tierswitch.policies import Cascade
from tierswitch.router import Router
from tierswitch.tiers import CallableTier

HERE = Path(__file__).resolve().parent
FACTORIES = HERE / "data" / "live_tiers.py"
BANKING = HERE.parent.parent / "shared" / "data" / "banking77"


@pytest.fixture(scope="module")
def tiers():
    import importlib.util

    spec = importlib.util.spec_from_file_location("live_tiers_for_test", FACTORIES)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make_base(), CallableTier("full", module.make_full(), cost=10.0)


@pytest.fixture(scope="module")
def test_rows():
    with open(BANKING / "test.csv", encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    random.Random(1).shuffle(rows)
    return [r["text"] for r in rows[:300]], [r["category"] for r in rows[:300]]


def test_run_live_measures_every_tier_and_the_router(tiers, test_rows):
    base, full = tiers
    xs, ys = test_rows
    router = Router([base, full], Cascade({"base": 0.6}), cache=None)
    report = run_live([base, full], xs, ys, router=router, batch_size=32)
    b, f, r = report["tiers"]["base"], report["tiers"]["full"], report["router"]
    print(f"\nlive, 300 BANKING77 test rows: base acc {b['accuracy']:.3f} cost {b['cost']}, full acc "
          f"{f['accuracy']:.3f} cost {f['cost']}, router acc {r['accuracy']:.3f} cost {r['cost']:.2f} "
          f"shares {r['shares']}")
    assert f["accuracy"] > b["accuracy"] + 0.1  # the stronger tier really is stronger on real data
    assert (b["cost"], f["cost"]) == (1.0, 10.0)
    assert b["accuracy"] < r["accuracy"] and r["cost"] < f["cost"] + 1.0
    assert r["shares"]["base"] + r["shares"]["full"] == pytest.approx(1.0) and 0 < r["shares"]["base"] < 1
    for row in (b, f, r):
        assert 0 < row["latency_p50_ms"] <= row["latency_p99_ms"]
        assert row["throughput_per_s"] > 0 and row["peak_python_bytes"] > 0
    assert b["model_size_bytes"] > 0 and f["model_size_bytes"] > 0
    assert r["cost_reduction"] == pytest.approx(1 - r["cost"] / f["cost"])


def test_model_size_is_none_when_a_tier_does_not_say():
    assert model_size(CallableTier("echo", lambda x: x)) is None


def test_live_cli_runs_factories_from_a_config(tmp_path):
    config = tmp_path / "live.yaml"
    config.write_text(
        f"dataset: {{path: {BANKING / 'test.csv'}, input: text, label: category}}\n"
        "tiers:\n"
        f"  - {{name: base, factory: '{FACTORIES}:make_base'}}\n"
        f"  - {{name: full, factory: '{FACTORIES}:make_full', cost: 10.0}}\n"
        "router:\n  policy: {kind: cascade, thresholds: {base: 0.6}}\n  cache: {kind: none}\n"
        "batch_size: 16\n")
    code = bench_main(["live", str(config), "--limit", "60", "--out", str(tmp_path / "out"), "--quiet"])
    assert code == 0
    report = json.loads((tmp_path / "out" / "live.json").read_text())
    assert report["rows"] == 60 and set(report["tiers"]) == {"base", "full"}
    assert report["tiers"]["full"]["cost"] == 10.0 and report["router"]["cache_hits"] == 0


@pytest.mark.parametrize("tier,field", [
    ({"name": "base", "factory": "no_colon"}, "tiers[0].factory"),
    ({"name": "base", "factory": "no.such.module:make"}, "tiers[0].factory"),
    ({"name": "base", "factory": f"{FACTORIES}:missing"}, "tiers[0].factory"),
    ({"factory": f"{FACTORIES}:make_base"}, "tiers[0].name"),
])
def test_live_config_errors_name_the_field(tmp_path, tier, field):
    import yaml

    config = tmp_path / "live.yaml"
    config.write_text(yaml.safe_dump({"dataset": {"path": str(BANKING / "test.csv"), "input": "text",
                                                  "label": "category"}, "tiers": [tier]}))
    with pytest.raises(ConfigError) as info:
        load_live_config(config, limit=5)
    assert info.value.field == field


def test_live_config_checks_the_dataset_columns(tmp_path):
    import yaml

    config = tmp_path / "live.yaml"
    config.write_text(yaml.safe_dump({"dataset": {"path": str(BANKING / "test.csv"), "input": "question",
                                                  "label": "category"}, "tiers": []}))
    with pytest.raises(ConfigError) as info:
        load_live_config(config)
    assert info.value.field == "dataset.input"
