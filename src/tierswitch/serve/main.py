"""``tierswitch serve router.yaml [--host --port --workers]``: the gateway under uvicorn.

One worker runs the app in this process. ``--workers N`` uses uvicorn's multi-process mode with the app factory
(``tierswitch.serve.app:create_app``): every worker builds its own router from the config, and they share state
only through Redis (cache, single flight, limits) when the config has a redis cache.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

from tierswitch.serve.observe import LOG_ENV, setup_logging

__all__ = ["main", "setup_logging"]

def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tierswitch serve", description="the OpenAI-compatible routing gateway")
    p.add_argument("config", nargs="?", help="router config (YAML/TOML/JSON) with tiers, policy, cache, gateway")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; 0.0.0.0 for all)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=1, help="worker processes (each builds its own router)")
    p.add_argument("--no-access-log", action="store_true", help="log warnings only, no line per request")
    p.add_argument("--hash-key", metavar="KEY", help="print the sha256 digest to configure for API key KEY, exit")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.hash_key is not None:
        from tierswitch.serve.settings import hash_key

        print(hash_key(args.hash_key))
        return 0
    if args.config is None:
        _parser().error("the config file is required")
    if args.workers < 1:
        _parser().error("--workers must be >= 1")
    import uvicorn

    from tierswitch.serve.app import CONFIG_ENV, GatewayApp

    setup_logging(not args.no_access_log)
    path = str(Path(args.config).resolve())
    app = GatewayApp(path)  # validates the config here, so a bad one fails before any worker starts
    drain = app.gateway.current().settings.drain_timeout_s
    # keep-alive longer than a load balancer's idle timeout (commonly 60 s), so the gateway never closes a pooled
    # connection just as a client (or the balancer) sends on it (the client would see a reset, not a status)
    common = dict(host=args.host, port=args.port, lifespan="on", access_log=False, log_level="warning",
                  timeout_graceful_shutdown=int(drain) + 5, server_header=False, timeout_keep_alive=75)
    if args.workers == 1:
        uvicorn.Server(uvicorn.Config(app, **common)).run()
        return 0
    os.environ[CONFIG_ENV] = path
    os.environ[LOG_ENV] = "0" if args.no_access_log else "1"
    del app
    uvicorn.run("tierswitch.serve.app:create_app", factory=True, workers=args.workers,
                **common)
    return 0
