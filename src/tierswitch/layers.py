"""The floors of the package, lowest first: a module may import its own floor and the ones below, never above.

``tests/test_architecture.py`` builds the import graph from the source (every ``import``, also inside functions and
``TYPE_CHECKING`` blocks) and fails on an upward import or a cycle. Each entry maps module prefixes to one floor;
the longest matching prefix wins. Inside the strategies floor, the seams come first: ``policies``,
``reliability`` and ``distill`` may use ``tiers``, ``estimator`` and ``cache``, never the reverse.
"""

from __future__ import annotations

__all__ = ["LAYERS", "layer_of"]

#: (floor name, why it is there, module prefixes), lowest first.
LAYERS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("ground", "value objects, the error tree, validators and digests that everything else uses",
     ("tierswitch.types", "tierswitch.errors", "tierswitch.validation", "tierswitch.digest", "tierswitch.outputs",
      "tierswitch.serialization", "tierswitch.layers")),
    ("seams", "the three seams the strategies are built on: a model, a scorer, a store",
     ("tierswitch.tiers", "tierswitch.estimator", "tierswitch.cache")),
    ("strategies", "choosing, guarding and teaching tiers: they use the seams, never the router",
     ("tierswitch.policies", "tierswitch.reliability", "tierswitch.distill", "tierswitch.telemetry")),
    ("routing core", "the router and its steps (admission, decision, miss loop, batch, flight, hooks, stats)",
     ("tierswitch.router", "tierswitch.routing")),
    ("assembly", "building routers from plain data: the kind registry, from_config, hot reload",
     ("tierswitch.config", "tierswitch.assembly")),
    ("built on the core", "measuring and observing routers: benchmarks, tuning, metrics, the decorator",
     ("tierswitch.bench", "tierswitch.metrics", "tierswitch.decorator")),
    ("entry points", "what a user runs: the CLI, the demo, the gateway, the recorded-LLM test servers",
     ("tierswitch.cli", "tierswitch.demo", "tierswitch.serve", "tierswitch.testing", "tierswitch.__main__")),
    ("package", "the public surface re-exports everything", ("tierswitch",)),
)


def layer_of(module: str) -> int:
    """The floor index of ``module`` (a dotted name under ``tierswitch``); the longest matching prefix wins."""
    best, best_len = -1, -1
    for index, (_, _, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = index, len(prefix)
    if best < 0:
        raise KeyError(f"{module} is on no floor; add it to tierswitch.layers.LAYERS")
    return best
