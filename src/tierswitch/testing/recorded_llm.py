"""The recorded-LLM server from the command line, and the names of its parts in one place.

``python -m tierswitch.testing.recorded_llm --model mixtral --port 8001 [--scale 1.0]`` serves the shipped GSM8K
table's recorded answers over the OpenAI chat-completions protocol until interrupted. The protocol, token counts,
latency model and faults are described in ``tierswitch.testing.app``.
"""

from __future__ import annotations

from tierswitch.testing.app import DEFAULT_LATENCY, FAULTS, Faults, LatencyModel, build_app, gsm8k_app, pieces
from tierswitch.testing.server import RecordedServer

__all__ = ["DEFAULT_LATENCY", "FAULTS", "Faults", "LatencyModel", "RecordedServer", "build_app", "gsm8k_app",
           "main", "pieces"]


def main(argv: list[str] | None = None) -> int:
    """``python -m tierswitch.testing.recorded_llm --model mixtral --port 8001 [--scale 1.0]``."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tierswitch.testing.recorded_llm",
                                     description="serve recorded GSM8K answers over the chat-completions protocol")
    parser.add_argument("--model", action="append", choices=sorted(DEFAULT_LATENCY),
                        help="model to serve (repeatable; default both)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: a free port (printed)")
    parser.add_argument("--scale", type=float, default=1.0, help="latency scale (0: answer at once)")
    args = parser.parse_args(argv)
    server = RecordedServer.gsm8k(args.model or sorted(DEFAULT_LATENCY), scale=args.scale, host=args.host,
                                  port=args.port)
    print(f"serving {args.model or sorted(DEFAULT_LATENCY)} at {server.base_url}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
