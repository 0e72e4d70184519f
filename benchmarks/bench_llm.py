"""LLM tiers under concurrency: 64 concurrent calls over a recorded-LLM server with the latency model on (scaled).

Three ways to make the same 64 calls, side by side in one run, interleaved round by round:
- ``bare``: a plain ``httpx.AsyncClient`` POST to the server (the upstream call itself, JSON decoded);
- ``tier``: ``await OpenAITier.apredict_one(q)`` (validation, body, retries, parsing, usage pricing, Prediction);
- ``router``: ``await router.acall(q)`` over that tier (``Fixed`` policy, no cache, so every call goes upstream).

Overhead = a quantile of the variant's per-request latency minus the same quantile of the bare call's, all from
the same run (the server's latency model is deterministic per prompt, and every variant sends the same prompts).
The server runs in its own process (``--in-process`` puts it on a thread here, sharing the GIL), so the client's
CPU time per request (``time.process_time``) is the benchmark's own work: ``cpu_overhead_ms_per_req`` is the
variant's minus the bare call's, a figure that holds up on a loaded machine where wall-clock quantiles do not. Run:

    PYTHONPATH=src python benchmarks/bench_llm.py --scale 0.02 --rounds 7 --concurrency 64

(``python -m pytest benchmarks/bench_llm.py`` runs a one-round smoke version at scale 0.)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import numpy as np

from tierswitch import Router
from tierswitch.policies import Fixed
from tierswitch.testing import RecordedServer, load_gsm8k
from tierswitch.tiers.openai import OpenAITier, TokenPrices


async def timed(fn: Callable[[str], Awaitable[Any]], prompts: list[str]) -> tuple[float, list[float]]:
    async def one(q: str) -> float:
        t0 = time.perf_counter()
        await fn(q)
        return time.perf_counter() - t0

    start = time.perf_counter()
    latencies = await asyncio.gather(*(one(q) for q in prompts))
    return time.perf_counter() - start, list(latencies)


class ServerProcess:
    """The recorded server in its own process (so it does not share the benchmark's GIL), stopped by its pid."""

    def __init__(self, scale: float) -> None:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        sock.close()
        self.proc = subprocess.Popen([sys.executable, "-m", "tierswitch.testing.recorded_llm", "--model", "mixtral",
                                      "--port", str(self.port), "--scale", str(scale)], stdout=subprocess.DEVNULL)
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        deadline = time.monotonic() + 30
        while True:  # readiness: the first successful /v1/models
            try:
                httpx.get(self.base_url + "/models", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise RuntimeError("the recorded server did not start") from None
                time.sleep(0.05)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def run(scale: float, rounds: int, concurrency: int, in_process: bool = False, order: str = "bare-first",
              with_router: bool = True) -> dict[str, Any]:
    table = load_gsm8k()
    prompts = [r.prompt for r in table.rows[:concurrency]]
    server: Any = RecordedServer.gsm8k(["mixtral"], scale=scale) if in_process else ServerProcess(scale)
    with server:
        tier = OpenAITier("mixtral", server.base_url, "mixtral", params={"temperature": 0}, confidence=None,
                          cost=TokenPrices(0.24, 0.24))
        routed_tier = OpenAITier("mixtral", server.base_url, "mixtral", params={"temperature": 0}, confidence=None,
                                 cost=TokenPrices(0.24, 0.24))  # its own pool, like the other two variants
        router = Router([routed_tier], policy=Fixed("mixtral"), cache=None)
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)  # the same pool as the tier
        async with httpx.AsyncClient(timeout=60, limits=limits) as client:
            url = server.base_url + "/chat/completions"

            async def bare(q: str) -> Any:
                r = await client.post(url, json={"model": "mixtral", "temperature": 0,
                                                 "messages": [{"role": "user", "content": q}]})
                return r.json()["choices"][0]["message"]["content"]

            variants: dict[str, Callable[[str], Awaitable[Any]]] = {
                "bare": bare, "tier": tier.apredict_one, "router": router.acall}
            if order == "reversed":
                variants = {"tier": tier.apredict_one, "bare": bare, "router": router.acall}
            if not with_router:
                del variants["router"]
            for fn in variants.values():  # warm-up: connection pools, first-use imports
                await timed(fn, prompts)
            walls: dict[str, list[float]] = {k: [] for k in variants}
            lats: dict[str, list[list[float]]] = {k: [] for k in variants}
            cpus: dict[str, list[float]] = {k: [] for k in variants}
            for _ in range(rounds):
                for name, fn in variants.items():
                    cpu0 = time.process_time()
                    wall, latency = await timed(fn, prompts)
                    cpus[name].append((time.process_time() - cpu0) / len(prompts))
                    walls[name].append(wall)
                    lats[name].append(latency)
        await tier.aclose()
        await routed_tier.aclose()
    out: dict[str, Any] = {"scale": scale, "rounds": rounds, "concurrency": concurrency}
    bare_lat = np.array(lats["bare"]).ravel()
    for name in variants:
        lat = np.array(lats[name]).ravel()
        p50, p99 = np.median(lat) * 1e3, np.quantile(lat, 0.99) * 1e3
        out[name] = {"req_per_s": round(float(concurrency / np.median(walls[name])), 1),
                     "p50_ms": round(float(p50), 2), "p99_ms": round(float(p99), 2),
                     "overhead_p50_ms": round(float(p50 - np.median(bare_lat) * 1e3), 2),
                     "overhead_p99_ms": round(float(p99 - np.quantile(bare_lat, 0.99) * 1e3), 2),
                     "client_cpu_ms_per_req": round(float(np.median(cpus[name]) * 1e3), 3),
                     "cpu_overhead_ms_per_req": round(float((np.median(cpus[name]) - np.median(cpus["bare"])) * 1e3),
                                                      3)}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=float, default=0.02)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--in-process", action="store_true", help="server thread in this process (shares the GIL)")
    parser.add_argument("--order", choices=["bare-first", "reversed"], default="bare-first")
    parser.add_argument("--no-router", action="store_true", help="only bare vs tier")
    args = parser.parse_args(argv)
    result = asyncio.run(run(args.scale, args.rounds, args.concurrency, args.in_process, args.order,
                             not args.no_router))
    print(json.dumps(result, indent=2))
    return 0


def test_bench_llm_smoke():
    result = asyncio.run(run(0.0, 1, 16, in_process=True))
    assert result["bare"]["req_per_s"] > 0 and result["router"]["req_per_s"] > 0


if __name__ == "__main__":
    raise SystemExit(main())
