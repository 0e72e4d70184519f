"""``tierswitch demo``: the whole idea on real data, end to end, in minutes.

Importing this package loads nothing heavy; ``demo_main`` imports torch, scikit-learn and matplotlib when it runs.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["demo_main"]


def demo_main(argv: Sequence[str] | None = None) -> int:
    """Run ``tierswitch demo`` with ``argv`` (see ``tierswitch demo --help``); returns the exit code."""
    args = list(argv) if argv is not None else None
    if args is not None and any(w in args for w in ("gsm8k", "llm")) and "--workload" in args:
        from tierswitch.demo.llm import main as llm_main  # LLM routing through the gateway (demo/llm.py)

        return llm_main(args)
    from tierswitch.demo.main import demo_main as _main

    return _main(argv)
