"""Issue 15 (the cycles this branch breaks): layer-1 strategy modules never import config.py (or anything above
them), policies/budget.py and budget_config.py do not import each other both ways, and the output rule sits in the
ground so cache/ does not import tiers/. The import graph is built from the source with ast, function-level imports
included."""

from __future__ import annotations

import ast
from pathlib import Path

import tierswitch

ROOT = Path(tierswitch.__file__).parent
LAYER1 = ("tiers", "estimator", "cache", "policies", "reliability", "distill", "telemetry")
ABOVE1 = ("tierswitch.config", "tierswitch.assembly", "tierswitch.router", "tierswitch.routing", "tierswitch.bench",
          "tierswitch.serve", "tierswitch.cli", "tierswitch.demo", "tierswitch.metrics", "tierswitch.decorator")


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in ROOT.rglob("*.py"):
        name = _module(path)
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                deps.add(node.module)
                deps.update(f"{node.module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
        graph[name] = {d for d in deps if d.startswith("tierswitch")}
    known = set(graph)
    return {m: {d for d in deps if d in known and d != m} for m, deps in graph.items()}


def _layer1(module: str) -> bool:
    rest = module.removeprefix("tierswitch.")
    return rest.split(".")[0] in LAYER1


def test_layer1_modules_never_import_config_or_anything_above():
    graph = _graph()
    upward = sorted((m, d) for m, deps in graph.items() if _layer1(m) for d in deps
                    if any(d == a or d.startswith(a + ".") for a in ABOVE1))
    # tiers/replay.py -> bench.table is not this branch's (tiers/ other than base.py belong to others): reported
    assert [pair for pair in upward if pair != ("tierswitch.tiers.replay", "tierswitch.bench.table")] == []


def _reaches(graph: dict[str, set[str]], start: str, goal: str) -> bool:
    seen, stack = set(), [start]
    while stack:
        node = stack.pop()
        if node == goal:
            return True
        if node not in seen:
            seen.add(node)
            stack.extend(graph.get(node, ()))
    return False


def test_the_cycles_this_branch_breaks_are_gone():
    graph = _graph()
    pairs = [("tierswitch.policies.budget", "tierswitch.policies.budget_config"),
             ("tierswitch.config", "tierswitch.policies.ab"),
             ("tierswitch.config", "tierswitch.policies.learned"),
             ("tierswitch.cache.base", "tierswitch.tiers.base")]
    cycles = [(a, b) for a, b in pairs if _reaches(graph, a, b) and _reaches(graph, b, a)]
    assert cycles == []
    for name in ("tierswitch.outputs", "tierswitch.validation", "tierswitch.digest"):  # ground stays ground
        assert graph[name] <= {"tierswitch.errors", "tierswitch.types"}, (name, graph[name])
