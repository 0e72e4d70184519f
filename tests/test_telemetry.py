"""Decision logs: one JSON line per request, readable back, safe to attach to any router."""

from __future__ import annotations

import numpy as np

from tierswitch import CallableTier, Cascade, Router
from tierswitch.telemetry import DecisionLog, read_decision_log


def test_decision_log_round_trip(tmp_path):
    tiers = [CallableTier("base", lambda x: (len(x), np.array([0.6, 0.4])), cost=1.0),
             CallableTier("full", lambda x: (np.int64(len(x)), np.array([0.99, 0.01])), cost=10.0)]
    path = tmp_path / "logs" / "decisions.jsonl"
    with DecisionLog(path) as log:
        router = Router(tiers, Cascade({"base": 0.8}), hooks=[log])
        router("hello", user="u1")
        router("hello")
        router.batch(["a", "bb"])
    records = list(read_decision_log(path))
    assert len(records) == 4 == log.written
    first = records[0]
    assert first["tier"] == "full" and first["cost"] == 11.0 and not first["cached"]
    assert first["predictions"]["base"]["confidence"] == 0.6 and first["predictions"]["full"]["output"] == 5
    assert first["meta"] == {"user": "u1"} and first["propensity"] == 1.0
    assert records[1]["cached"] and records[1]["cost"] == 0.0
    assert [r["request_id"] for r in records] == sorted(r["request_id"] for r in records)


def test_torn_last_line_is_skipped(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"request_id": 1}\n{"request_id": 2, "tier": "ba')
    assert [r["request_id"] for r in read_decision_log(path)] == [1]


def test_array_outputs_are_logged_whole(tmp_path):
    big = np.arange(2_000, dtype=np.float32).reshape(40, 50)
    tiers = [CallableTier("full", lambda x: big, cost=1.0)]
    path = tmp_path / "d.jsonl"
    with DecisionLog(path) as log:
        Router(tiers, Cascade({}), hooks=[log], cache=None)("x")
    output = next(read_decision_log(path))["predictions"]["full"]["output"]
    assert len(output) == 40 and len(output[0]) == 50 and output[39][49] == 1999.0 and output[3][4] == 154.0
