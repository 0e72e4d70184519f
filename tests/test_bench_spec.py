"""Replay specs (YAML, TOML, dicts) and tables (CSV, JSONL): parsing, skipped rows, and errors naming the field."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from tierswitch.bench.spec import load_spec, spec_from_dict
from tierswitch.bench.table import load_replay, parse_outcome
from tierswitch.errors import ConfigError

DATA = Path(__file__).parent / "data"


def small_spec(**changes):
    spec = {
        "data": "replay_small.csv", "input": "question", "id": "id",
        "tiers": [
            {"name": "base", "outcome": "base_ok", "cost": 0.1, "latency": "base_latency"},
            {"name": "mid", "outcome": "mid_ok", "cost": {"per_call": 0.5, "per_token": 0.01, "tokens": "tokens"}},
            {"name": "full", "outcome": "full_ok", "cost": {"column": "full_cost"}},
        ],
    }
    spec.update(changes)
    return spec


def test_yaml_spec_loads_outcomes_costs_latencies_and_reports_skipped_rows():
    data = load_replay(load_spec(DATA / "replay_small.yaml", base_dir=DATA))
    assert data.tiers == ("base", "mid", "full")
    assert data.ids == ["q1", "q2", "q4", "q6", "q7", "q8"]
    # rows with a missing outcome are skipped and reported, never scored as wrong
    assert [(s.id, s.reason) for s in data.skipped] == [
        ("q3", "missing outcome in ['base_ok']"), ("q5", "missing outcome in ['full_ok']")]
    assert data.outcomes.tolist() == [[1, 1, 1], [0, 0, 1], [0.25, 0, 1], [0, 1, 0], [1, 1, 1], [0, 0, 1]]
    assert data.costs[:, 0].tolist() == [0.1] * 6
    assert data.costs[:, 1].tolist() == pytest.approx([0.5 + 0.01 * t for t in (10, 20, 12, 30, 5, 40)])
    assert data.costs[:, 2].tolist() == [0.5, 0.7, 0.6, 0.9, 0.5, 1.1]
    assert data.latencies is not None and data.latencies[0, 0] == 0.010 and math.isnan(data.latencies[0, 1])
    assert data.inputs[3] == "Two lines\nin one field"  # a real CSV parser: newlines inside a field


def test_toml_spec_matches_yaml_or_says_to_use_yaml():
    try:
        import tomllib  # noqa: F401
    except ModuleNotFoundError:  # Python 3.10: a clear message instead
        with pytest.raises(ConfigError, match="YAML"):
            load_spec(DATA / "replay_small.toml", base_dir=DATA)
        return
    assert load_spec(DATA / "replay_small.toml", base_dir=DATA) == load_spec(DATA / "replay_small.yaml", base_dir=DATA)


def test_jsonl_table_gives_the_same_data_as_csv():
    csv_data = load_replay(spec_from_dict(small_spec(), DATA))
    jsonl = load_replay(spec_from_dict(small_spec(data="replay_small.jsonl"), DATA))
    assert jsonl.ids == csv_data.ids and jsonl.inputs == csv_data.inputs
    assert np.array_equal(jsonl.outcomes, csv_data.outcomes) and np.allclose(jsonl.costs, csv_data.costs)
    assert [s.id for s in jsonl.skipped] == ["q3", "q5"]


def test_costs_from_text_columns_use_approximate_tokens():
    spec = small_spec()
    spec["tiers"][2]["cost"] = {"per_token": 2.0, "text": ["question", "answer"]}
    data = load_replay(spec_from_dict(spec, DATA))
    # q1: "What is 2+2?" (12 chars -> 3 tokens) + "four" (4 chars -> 1 token)
    assert data.costs[0, 2] == 2.0 * (3 + 1)


def test_exclude_list_and_numeric_columns():
    spec = small_spec(exclude={"path": "exclude_small.txt"}, numeric=["tokens"])
    data = load_replay(spec_from_dict(spec, DATA))
    assert data.excluded == 1 and "q7" not in data.ids
    assert data.inputs[0] == {"text": "What is 2+2?", "tokens": 10.0}


@pytest.mark.parametrize("value,expected", [(True, 1.0), (False, 0.0), ("True", 1.0), ("false", 0.0), (0, 0.0),
                                            ("1", 1.0), (0.25, 0.25), ("0.75", 0.75)])
def test_parse_outcome_accepts_bools_zero_one_and_scores(value, expected):
    assert parse_outcome(value, "f") == expected


@pytest.mark.parametrize("bad_value", ["maybe", 1.5, "-0.1"])
def test_a_present_but_malformed_outcome_is_an_error_naming_row_and_field(tmp_path, bad_value):
    (tmp_path / "t.csv").write_text(f"q,a,b\nhello,True,{bad_value}\n", encoding="utf-8")
    spec = {"data": "t.csv", "input": "q", "tiers": [{"name": "a", "outcome": "a", "cost": 1},
                                                     {"name": "b", "outcome": "b", "cost": 2}]}
    with pytest.raises(ConfigError) as info:
        load_replay(spec_from_dict(spec, tmp_path))
    assert info.value.field == "tiers[1].outcome (row 1)"


@pytest.mark.parametrize("change,field", [
    ({"tiers": None}, "tiers"),
    ({"tiers": [{"name": "a", "outcome": "a", "cost": 1}]}, "tiers"),
    ({"input": 3}, "input"),
    ({"data": None}, "data"),
    ({"colour": "red"}, "colour"),
    ({"format": "xlsx"}, "format"),
    ({"numeric": "tokens"}, "numeric"),
    ({"exclude": {"path": "x.txt", "extra": 1}}, "exclude"),
])
def test_spec_errors_name_the_field(change, field):
    with pytest.raises(ConfigError) as info:
        spec_from_dict(small_spec(**change), DATA)
    assert info.value.field == field


@pytest.mark.parametrize("tier,field", [
    ({"name": "x", "cost": 1}, "tiers[1].outcome"),
    ({"name": "x", "outcome": "mid_ok"}, "tiers[1].cost"),
    ({"name": "x", "outcome": "mid_ok", "cost": -1}, "tiers[1].cost.per_call"),
    ({"name": "x", "outcome": "mid_ok", "cost": {"per_token": 0.1}}, "tiers[1].cost.per_token"),
    ({"name": "x", "outcome": "mid_ok", "cost": {"tokens": "tokens"}}, "tiers[1].cost.per_token"),
    ({"name": "x", "outcome": "mid_ok", "cost": {"column": "c", "per_call": 1}}, "tiers[1].cost.column"),
    ({"name": "x", "outcome": "mid_ok", "cost": {"price": 1}}, "tiers[1].cost.price"),
    ({"name": "a:b", "outcome": "mid_ok", "cost": 1}, "tiers[1].name"),
    ({"name": "x", "outcome": "mid_ok", "cost": 1, "speed": 2}, "tiers[1].speed"),
])
def test_tier_errors_name_the_field(tier, field):
    spec = small_spec()
    spec["tiers"][1] = tier
    with pytest.raises(ConfigError) as info:
        spec_from_dict(spec, DATA)
    assert info.value.field == field


def test_duplicate_tier_names_and_missing_columns_are_refused():
    spec = small_spec()
    spec["tiers"][1]["name"] = "base"
    with pytest.raises(ConfigError, match="unique"):
        spec_from_dict(spec, DATA)
    spec = small_spec()
    spec["tiers"][2]["outcome"] = "no_such_column"
    with pytest.raises(ConfigError) as info:
        load_replay(spec_from_dict(spec, DATA))
    assert info.value.field == "tiers[2].outcome" and "no_such_column" in str(info.value)


def test_unreadable_files_are_config_errors():
    with pytest.raises(ConfigError) as info:
        load_replay(spec_from_dict(small_spec(data="nope.csv"), DATA))
    assert info.value.field == "data"
    with pytest.raises(ConfigError):
        load_spec(DATA / "nope.yaml")
    with pytest.raises(ConfigError, match="format"):
        load_spec(DATA / "replay_small.csv")


def test_tiers_must_be_listed_cheapest_first():
    spec = small_spec()
    spec["tiers"][0]["cost"] = 50.0
    with pytest.raises(ConfigError, match="cheapest first") as info:
        load_replay(spec_from_dict(spec, DATA))
    assert info.value.field == "tiers"
