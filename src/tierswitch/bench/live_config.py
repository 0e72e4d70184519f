"""The live benchmark's config: a labelled dataset, the real tiers (built by factories), and an optional router.

::

    dataset: {path: ../shared/data/banking77/test.csv, input: text, label: category, limit: 500}
    tiers:                                   # cheapest first
      - {name: base, factory: "mypkg.models:make_base", cost: 1.0}
      - {name: full, factory: "models.py:make_full", cost: 20.0}
    router:                                  # optional: a router config (policy, estimator, cache), or a file path
      policy: {kind: cascade, thresholds: {base: 0.8}}
    batch_size: 32

A factory is ``"module:function"`` or ``"path/to/file.py:function"``; it is called with no arguments and returns a
``Tier`` or a plain inference function (wrapped in a ``CallableTier`` with the entry's ``cost``). Relative paths
resolve against the working directory. Every error is a ``ConfigError`` naming the field.
"""

from __future__ import annotations

import csv
import importlib
import importlib.util
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tierswitch.errors import ConfigError
from tierswitch.tiers.base import Tier
from tierswitch.validation import describe, positive

__all__ = ["LiveSetup", "load_live_config"]


@dataclass
class LiveSetup:
    """What ``run_live`` needs, built from a config."""

    tiers: list[Tier]
    inputs: list[Any]
    labels: list[Any]
    router: Any
    batch_size: int
    source: str


def _factory(spec: Any, field: str) -> Any:
    if not isinstance(spec, str) or ":" not in spec:
        raise ConfigError(field, f"must be 'module:function' or 'file.py:function', got {describe(spec)}")
    target, _, name = spec.rpartition(":")
    try:
        if target.endswith(".py"):
            path = Path(target)
            module_spec = importlib.util.spec_from_file_location(f"_tierswitch_live_{path.stem}", path)
            if module_spec is None or module_spec.loader is None:
                raise ImportError(f"cannot load {path}")
            module = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(target)
    except (ImportError, OSError) as exc:
        raise ConfigError(field, f"cannot import {describe(target)}: {exc}") from exc
    fn = getattr(module, name, None)
    if not callable(fn):
        raise ConfigError(field, f"{describe(target)} has no function {describe(name)}")
    return fn


def _dataset(config: Any, limit: int | None) -> tuple[list[Any], list[Any], str]:
    if not isinstance(config, Mapping):
        raise ConfigError("dataset", "must be {path: FILE, input: COLUMN, label: COLUMN}")
    path = config.get("path")
    if not isinstance(path, str):
        raise ConfigError("dataset.path", f"must be a CSV or JSONL file path, got {describe(path)}")
    columns = []
    for key in ("input", "label"):
        if not isinstance(config.get(key), str):
            raise ConfigError(f"dataset.{key}", f"must name a column, got {describe(config.get(key))}")
        columns.append(config[key])
    limit = config.get("limit", limit) if limit is None else limit
    if limit is not None:
        positive("dataset.limit", limit, integer=True)
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            if path.endswith((".jsonl", ".ndjson")):
                rows = [json.loads(line) for line in fh if line.strip()]
            else:
                rows = list(csv.DictReader(fh))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError("dataset.path", f"cannot read {path}: {exc}") from exc
    rows = rows[:limit] if limit else rows
    if not rows:
        raise ConfigError("dataset.path", f"{path} has no rows")
    for column, key in zip(columns, ("input", "label")):
        if column not in rows[0]:
            raise ConfigError(f"dataset.{key}", f"column {describe(column)} is not in {path}; columns: "
                                                f"{sorted(rows[0])}")
    return [r[columns[0]] for r in rows], [r[columns[1]] for r in rows], path


def load_live_config(path: str | Path, limit: int | None = None) -> LiveSetup:
    """Read the config, load the dataset, call the tier factories and build the router (if configured)."""
    from tierswitch.config import load_config
    from tierswitch.tiers.callable import CallableTier

    config = load_config(path)
    unknown = sorted(set(config) - {"dataset", "tiers", "router", "batch_size"})
    if unknown:
        raise ConfigError(unknown[0], "unknown key; allowed: batch_size, dataset, router, tiers")
    batch_size = config.get("batch_size", 32)  # checked before any model is built: a typo costs no loading time
    positive("batch_size", batch_size, integer=True)
    inputs, labels, source = _dataset(config.get("dataset"), limit)
    entries = config.get("tiers")
    if not isinstance(entries, list) or not entries:
        raise ConfigError("tiers", "must list the tiers, cheapest first, each {name, factory, cost}")
    tiers: list[Tier] = []
    for i, entry in enumerate(entries):
        field = f"tiers[{i}]"
        if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
            raise ConfigError(f"{field}.name", "each tier needs a name and a factory")
        built = _factory(entry.get("factory"), f"{field}.factory")()
        if isinstance(built, Tier):
            if built.name != entry["name"]:
                raise ConfigError(f"{field}.name",
                    f"the factory built tier {describe(built.name)}, not {describe(entry['name'])}")
            tiers.append(built)
        elif callable(built):
            cost = entry.get("cost", 0.0)
            if isinstance(cost, bool) or not isinstance(cost, (int, float)):
                raise ConfigError(f"{field}.cost", f"must be a number per call, got {describe(cost)}")
            tiers.append(CallableTier(entry["name"], built, cost=float(cost)))
        else:
            raise ConfigError(f"{field}.factory", f"must return a Tier or a function, got {type(built).__name__}")
    router = None
    if config.get("router") is not None:
        from tierswitch.assembly.from_config import router_from_config

        router = router_from_config(config["router"], tiers)
    return LiveSetup(tiers, inputs, labels, router, batch_size, source)
