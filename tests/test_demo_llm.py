"""``tierswitch demo --workload gsm8k`` end to end on a slice: recorded servers, a gateway process, the openai
client; the table's rows and files come out and the numbers are the recorded answers' own."""

from __future__ import annotations

import json

import pytest

from tierswitch.cli import main
from tierswitch.testing import load_gsm8k


@pytest.mark.slow
def test_gsm8k_demo_through_the_gateway(tmp_path, capsys) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--workload", "gsm8k", "--limit", "40", "--latency-scale", "0", "--out", str(out),
                 "--quiet"]) == 0
    results = json.loads((out / "gsm8k-gateway.json").read_text())
    assert [r["config"] for r in results] == ["always-base", "always-full", "router"]
    rows = load_gsm8k().rows[:40]
    base, full, routed = results
    assert base["accuracy"] == sum(r.correct["mixtral"] for r in rows) / 40
    assert full["accuracy"] == sum(r.correct["gpt4"] for r in rows) / 40
    assert base["full_share"] == 0.0 and full["full_share"] == 1.0 and 0.0 < routed["full_share"] < 1.0
    assert base["mean_cost"] < routed["mean_cost"] < full["mean_cost"] and full["cost_reduction"] == 0.0
    assert (out / "gsm8k-gateway.png").stat().st_size > 0
    assert "| router | 40 |" in capsys.readouterr().out
