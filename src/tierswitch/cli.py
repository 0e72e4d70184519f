"""``tierswitch`` command line: parse, call the library, return an exit code.

Each subcommand lives in the module that implements it and is imported only when used, so ``tierswitch --help``
loads no torch.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from tierswitch.errors import TierswitchError

__all__ = ["main"]

# subcommand -> ("module:function taking argv and returning an exit code", one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("tierswitch.demo:demo_main", "adaptive tier switching on real data, end to end (the first command)"),
    "bench": ("tierswitch.bench.cli:bench_main", "cost vs accuracy from recorded outcomes (replay) or live tiers"),
    "tune": ("tierswitch.bench.cli:tune_main", "pick a policy config that meets a target, and write it"),
    "serve": ("tierswitch.serve.main:main", "the OpenAI-compatible routing gateway (Starlette under uvicorn)"),
    "distill-worker": ("tierswitch.distill.worker:main", "train the student from a fleet's Redis sample stream"),
    "distill": ("tierswitch.distill.export:main", "export full-tier LLM answers as chat fine-tuning JSONL (export)"),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: tierswitch COMMAND [options]   (tierswitch COMMAND --help for its options)", "", "commands:"]
    lines += [f"  {name.ljust(width)}  {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``tierswitch`` with ``argv`` (default: the process arguments); returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0 if args else 2
    if args[0] in ("-V", "--version"):
        from tierswitch import __version__

        print(f"tierswitch {__version__}")
        return 0
    command = COMMANDS.get(args[0])
    if command is None:
        print(f"tierswitch: unknown command {args[0]!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module, _, function = command[0].partition(":")
    entry = getattr(importlib.import_module(module), function)
    try:
        return int(entry(args[1:]) or 0)
    except TierswitchError as exc:
        print(f"tierswitch {args[0]}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (e.g. `tierswitch bench ... | head`): not an error of ours
        sys.stderr.close()
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
