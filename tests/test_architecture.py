"""The house: the import graph built from the source has no cycles and never points to a higher floor."""

from __future__ import annotations

import ast
from pathlib import Path

from tierswitch.layers import LAYERS, layer_of

SRC = Path(__file__).resolve().parents[1] / "src" / "tierswitch"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, module: str) -> set[str]:
    """Every tierswitch module ``path`` imports, at any depth (functions, TYPE_CHECKING blocks included)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("tierswitch"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("tierswitch"):
                found.add(target)
                found.update(f"{target}.{a.name}" for a in node.names)  # `from pkg import submodule`
    return found


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in SRC.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        graph[module] = {t for t in _imports(path, module) if t in files and t != module}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _package_edge(importer: str, target: str) -> bool:
    """A package's ``__init__`` re-exporting its own modules, or a module importing its own package's
    ``__init__``, is not an edge between floors."""
    return target == "tierswitch" or importer == "tierswitch"


def test_every_module_is_on_a_floor():
    for module in _graph():
        layer_of(module)  # raises KeyError naming the module


def test_no_module_imports_a_higher_floor():
    upward = []
    for importer, targets in _graph().items():
        for target in targets:
            if _package_edge(importer, target):
                continue
            if layer_of(target) > layer_of(importer):
                upward.append(f"{importer} ({LAYERS[layer_of(importer)][0]}) -> {target} "
                              f"({LAYERS[layer_of(target)][0]})")
    assert not upward, "upward imports:\n" + "\n".join(sorted(upward))


def test_the_import_graph_has_no_cycles():
    graph = {m: {t for t in ts if not _package_edge(m, t)} for m, ts in _graph().items()}
    # a package __init__ that re-exports its modules is part of that package, not a separate node in a cycle
    for module in list(graph):
        graph[module] = {t for t in graph[module] if not (module.startswith(t + ".") and t in graph)}
    cycles = _cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_routing_steps_never_import_the_router():
    offenders = sorted(m for m, ts in _graph().items() if m.startswith("tierswitch.routing") and
                       "tierswitch.router" in ts)
    assert not offenders


def test_the_graph_builder_sees_function_level_and_type_checking_imports(tmp_path):
    sample = tmp_path / "mod.py"
    sample.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from tierswitch.router import Router\n"
        "def f():\n    from tierswitch.cli import main\n    import tierswitch.bench.run\n"
    )
    found = _imports(sample, "tierswitch.cache.mod")
    assert {"tierswitch.router", "tierswitch.cli", "tierswitch.bench.run"} <= found
