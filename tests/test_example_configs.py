"""Every example config (in examples/configs and in the README) loads and routes real requests."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from tierswitch import Router
from tierswitch.config import load_config

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples" / "configs").glob("*.*"))


def tiers() -> dict:
    def model(name: str, confidence: float):
        return lambda x: (f"{name}", np.array([confidence, 1 - confidence]))

    return {"base": model("base", 0.85), "distilled": model("distilled", 0.9), "full": model("full", 0.99)}


def readme_configs() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return [block for block in re.findall(r"```yaml\n(.*?)```", text, re.S) if "policy:" in block]


def _route(router: Router) -> None:
    for x in ("hello", "a much longer question " * 20, [1.0, 2.0, 3.0]):
        out = router(x)
        assert out.tier in router.tier_order and out.output == out.tier and out.cost > 0
    assert router("hello").output in router.tier_order


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_config_loads_and_routes(path):
    names = list(load_config(path).get("tiers", {})) or ["base", "distilled", "full"]
    router = Router.from_config(path, {n: tiers()[n] for n in names})
    _route(router)


def test_readme_configs_load_and_route():
    blocks = readme_configs()
    assert blocks, "the README shows at least one config"
    for block in blocks:
        config = yaml.safe_load(block)
        names = list(config.get("tiers", {})) or ["base", "distilled", "full"]
        _route(Router.from_config(config, {n: tiers()[n] for n in names}))


def test_examples_exist():
    assert len(EXAMPLES) >= 5
