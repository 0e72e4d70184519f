"""``tierswitch distill-worker``: train a fleet's student from its Redis sample stream and publish promotions.

Routers feed samples (with the student's features already computed) into a ``RedisStreamBuffer``; this process
consumes them through the consumer group, trains, gates, and publishes each promoted student to the ``WeightStore``
that every router's ``WeightSubscriber`` follows. It resumes from the store's current version when there is one.
Prints one JSON line per promotion, and one summary line at exit. SIGTERM/SIGINT stop it after the current step.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from tierswitch.errors import ConfigError, DistillError, WeightVerificationError
from tierswitch.validation import describe

__all__ = ["build_parser", "main"]

log = logging.getLogger("tierswitch.distill")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tierswitch distill-worker", description=__doc__.split("\n\n")[0])
    p.add_argument("--redis", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
                   help="Redis URL (default: $REDIS_URL or redis://127.0.0.1:6379/0)")
    p.add_argument("--namespace", default="tierswitch", help="key prefix of the weight store (default: tierswitch)")
    p.add_argument("--stream", help="sample stream key (default: NAMESPACE:samples)")
    p.add_argument("--group", default="distill", help="consumer group (default: distill)")
    p.add_argument("--consumer", default=f"{socket.gethostname()}-{os.getpid()}",
                   help="this worker's consumer name; reuse it after a restart to resume its pending entries")
    p.add_argument("--spec", help="student architecture: a JSON file or inline JSON "
                   '({"input_dim": 64, "hidden": [128], "n_classes": 10, "classes": [...]}); '
                   "default: the spec of the store's current version")
    p.add_argument("--config", help="trainer settings (DistillConfig fields) as a JSON file or inline JSON")
    p.add_argument("--batch-size", type=int, help="fresh samples per step")
    p.add_argument("--eval-every", type=int, help="gate every K steps")
    p.add_argument("--min-holdout", type=int, help="holdout size below which the gate abstains")
    p.add_argument("--margin", type=float, help="agreement gain needed to promote")
    p.add_argument("--threads", type=int, help="torch threads for training (default 1)")
    p.add_argument("--int8", action="store_true", help="serve INT8 students when they agree within tolerance")
    p.add_argument("--prune", type=float, help="share of hidden units to prune when agreement allows")
    p.add_argument("--seed", type=int, help="seed of every random choice")
    p.add_argument("--claim-idle-ms", type=int, default=60_000,
                   help="claim entries another consumer left pending this long (default 60000)")
    p.add_argument("--audit-key", help="Redis list receiving every acknowledged entry id (audits, tests)")
    p.add_argument("--keep", type=int, default=5, help="published versions to keep (default 5)")
    p.add_argument("--idle-exit", type=float, help="exit after this many seconds without fresh samples")
    p.add_argument("--max-samples", type=int, help="exit after consuming this many fresh samples")
    p.add_argument("-v", "--verbose", action="store_true", help="log each promotion and error to stderr")
    return p


def _json_arg(value: str, field: str) -> Any:
    text = value
    if not value.lstrip().startswith("{"):
        try:
            with open(value, encoding="utf-8") as fh:
                text = fh.read()
        except OSError as exc:
            raise ConfigError(field, f"cannot read {describe(value)}: {exc}") from exc
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ConfigError(field, f"is not valid JSON: {exc}") from exc


def _config(args: argparse.Namespace) -> Any:
    from tierswitch.distill.config import DistillConfig

    d = _json_arg(args.config, "--config") if args.config else {}
    if not isinstance(d, dict):
        raise ConfigError("--config", f"must be a JSON object of DistillConfig fields, got {type(d).__name__}")
    flags = {"batch_size": args.batch_size, "eval_every": args.eval_every, "min_holdout": args.min_holdout,
             "margin": args.margin, "num_threads": args.threads, "prune": args.prune, "seed": args.seed}
    d.update({k: v for k, v in flags.items() if v is not None})
    if args.int8:
        d["int8"] = True
    return DistillConfig.from_dict(d)


def _no_raw(payload: Any) -> Any:
    raise DistillError("a sample reached the worker without features: give the routers' DistillFeeder a "
                       "student_input so samples carry x")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the worker until stopped (or ``--idle-exit`` / ``--max-samples``); returns the exit code."""
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    import redis

    from tierswitch.cache.redis_conn import redact_url

    config = _config(args)
    try:
        client = redis.Redis.from_url(args.redis, socket_connect_timeout=5, socket_timeout=30)
    except ValueError as exc:  # not a redis:// URL
        raise ConfigError("--redis", f"{exc}; pass a URL such as redis://127.0.0.1:6379/0") from exc
    try:
        try:
            client.ping()
            return _run(args, config, client)
        except redis.RedisError as exc:  # unreachable, refused, timed out, auth: one named line, no traceback
            raise DistillError(f"cannot use Redis at {redact_url(args.redis)} ({type(exc).__name__}: {exc}); "
                               "start it, or pass --redis / set REDIS_URL") from exc
    finally:
        client.close()


def _run(args: argparse.Namespace, config: Any, client: Any) -> int:
    from tierswitch.distill.redis_buffer import RedisStreamBuffer
    from tierswitch.distill.student import StudentSpec, build_student, student_tier
    from tierswitch.distill.trainer import Distiller
    from tierswitch.distill.weights import WeightStore

    store = WeightStore(client, args.namespace, keep=args.keep)
    spec = StudentSpec.from_dict(_json_arg(args.spec, "--spec")) if args.spec else None
    try:
        current = store.load()
    except WeightVerificationError as exc:
        log.error("not resuming from the store's current version: %s", exc)
        current = None
    if spec is None and current is None:
        raise ConfigError("--spec", "nothing is published yet, so the worker needs the student's architecture")
    spec = spec or current.spec  # type: ignore[union-attr]
    # with the spec's featuriser, samples carry the raw payload and are featurised here (the same trainer loop as
    # the local worker process of distill_into); without one they must carry features computed by the routers
    tier = student_tier(spec, None if spec.features is not None else _no_raw, seed=config.seed, cost=0.0)
    if current is not None:
        served = build_student(current.spec)
        served.load_state_dict(current.state_dict, strict=True)
        tier.swap_student(served, current.spec, current.version)
    buffer = RedisStreamBuffer(client, args.stream or f"{args.namespace}:samples", args.group, args.consumer,
                               claim_idle_ms=args.claim_idle_ms, audit_key=args.audit_key, seed=config.seed)

    def announce(event: Any) -> None:
        print(json.dumps({"event": "promoted", "version": event.version, "step": event.step,
                          "agreement_before": event.agreement_before, "agreement_after": event.agreement_after,
                          "variant": event.variant, "at": event.at}), flush=True)

    distiller = Distiller(tier, buffer, config, spec=spec, store=store, on_promote=announce)
    stop = threading.Event()
    last_fresh = [time.monotonic(), 0]

    def should_stop() -> bool:
        consumed = distiller.counters["trained"] + distiller.counters["holdout"]
        if consumed != last_fresh[1]:
            last_fresh[:] = [time.monotonic(), consumed]
        if args.max_samples is not None and consumed >= args.max_samples:
            return True
        if args.idle_exit is not None and time.monotonic() - last_fresh[0] > args.idle_exit:
            return True
        return stop.is_set()

    # SIGTERM/SIGINT stop the loop after its step; the caller's handlers come back afterwards (main() may run
    # inside another program, e.g. a test process, whose Ctrl-C must work again)
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        distiller.run_until(should_stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print(json.dumps({"event": "exit", **distiller.summary(), **buffer.stats()}), flush=True)
    return 0
