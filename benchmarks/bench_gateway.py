"""Gateway load: 64 concurrent clients x 5,000 requests through ``tierswitch serve`` to a zero-latency upstream, and
the same requests straight to the upstream in the same run (the baseline for the gateway's added latency).

    PYTHONPATH=src:. python benchmarks/bench_gateway.py [--tier openai|upstream|upstream_sync] [--requests 5000]

Everything is real and on loopback. ``--tier openai`` (default): the upstream is the recorded-LLM server
(``python -m tierswitch.testing.recorded_llm --model mixtral --scale 0``: recorded GSM8K answers, zero latency)
and the gateway's tier an ``OpenAITier`` (``kind: openai``); ``upstream``/``upstream_sync``: the upstream is
``tests/gateway_upstream.py`` and the tier a ``kind: python`` function forwarding with an async / a blocking httpx
client. The gateway is ``python -m tierswitch.serve`` (1 worker, then 2), no cache (every request goes upstream),
no access log; the client is one httpx AsyncClient process. Added latency is reported two ways: sequentially
(one client, no queueing: what the gateway adds to one request) and under the 64-way load (p50/p99 of both
paths, which include queueing on 2 shared cores).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.gateway_proc import PY, Proc, gateway, upstream  # noqa: E402

PROMPTS: list[str] = []


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def load(url: str, model: str, n: int, concurrency: int, tag: str) -> tuple[list[float], int, float]:
    """(latencies in s, errors, wall seconds) for ``n`` requests at ``concurrency``."""
    latencies: list[float] = []
    errors = 0
    counter = iter(range(n))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
        async def worker() -> None:
            nonlocal errors
            for i in counter:
                text = PROMPTS[i % len(PROMPTS)] if PROMPTS else f"{tag} {i}"
                body = {"model": model, "messages": [{"role": "user", "content": text}]}
                started = time.perf_counter()
                try:
                    r = await client.post("/v1/chat/completions", json=body)
                    ok = r.status_code == 200
                    kind = str(r.status_code)
                except httpx.HTTPError as exc:
                    ok, kind = False, type(exc).__name__
                latencies.append(time.perf_counter() - started)
                if not ok:
                    errors += 1
                    print(f"error on {tag} {i}: {kind}", file=sys.stderr)

        started = time.perf_counter()
        await asyncio.gather(*[worker() for _ in range(concurrency)])
        return latencies, errors, time.perf_counter() - started


def row(name: str, lat: list[float], errors: int, wall: float) -> str:
    return (f"| {name} | {len(lat)} | {errors} | {len(lat) / wall:,.0f} | {pct(lat, 0.5) * 1e3:.2f} | "
            f"{pct(lat, 0.99) * 1e3:.2f} |")


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--requests", type=int, default=5000)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--sequential", type=int, default=1000)
    p.add_argument("--tier", choices=("openai", "upstream", "upstream_sync"), default="openai")
    args = p.parse_args()
    if args.tier == "openai":
        from tierswitch.testing import load_gsm8k

        PROMPTS.extend(row.prompt for row in load_gsm8k().rows)
        up_proc = Proc([PY, "-m", "tierswitch.testing.recorded_llm", "--model", "mixtral", "--port", "{port}",
                        "--scale", "0"], ready_path="/v1/models")
        direct_model = "mixtral"
    else:
        up_proc, direct_model = upstream(), "up"
    tmp = Path(tempfile.mkdtemp(prefix="bench-gw-"))
    lines = ["| path | requests | errors | req/s | p50 ms | p99 ms |", "|---|---|---|---|---|---|"]
    with up_proc as up:
        tier = ({"kind": "openai", "base_url": up.url + "/v1", "model": "mixtral", "params": {"temperature": 0}}
                if args.tier == "openai" else {"kind": "python", "function": f"tests.gateway_tiers:{args.tier}"})
        config = {"tiers": {"up": tier}, "policy": {"kind": "fixed", "tier": "up"}, "cache": {"kind": "none"},
                  "gateway": {"reload_interval_s": 0}}
        env = {"GW_UPSTREAM_URL": up.url}
        for workers in (1, 2):
            gw = gateway(config, tmp, env, workers=workers, name=f"w{workers}.yaml")
            gw.args.append("--no-access-log")
            with gw:
                asyncio.run(load(gw.url, "up", 500, args.concurrency, f"warm{workers}"))  # warm both paths
                asyncio.run(load(up.url, direct_model, 500, args.concurrency, f"warm{workers}"))
                if workers == 1:
                    seq_gw = asyncio.run(load(gw.url, "up", args.sequential, 1, "seq"))[0]
                    seq_up = asyncio.run(load(up.url, direct_model, args.sequential, 1, "seq"))[0]
                    direct = asyncio.run(load(up.url, direct_model, args.requests, args.concurrency, "direct"))
                    lines.append(row("upstream direct, 64 clients", *direct))
                through = asyncio.run(load(gw.url, "up", args.requests, args.concurrency, f"gw{workers}"))
                lines.append(row(f"gateway {workers} worker(s), 64 clients", *through))
                if workers == 1:
                    gw1 = through
    added50 = (pct(seq_gw, 0.5) - pct(seq_up, 0.5)) * 1e3
    added99 = (pct(seq_gw, 0.99) - pct(seq_up, 0.99)) * 1e3
    print(f"tier: {args.tier}\n" + "\n".join(lines))
    print(f"\nsequential (1 client, {args.sequential} requests): upstream p50 {pct(seq_up, .5)*1e3:.2f} ms "
          f"p99 {pct(seq_up, .99)*1e3:.2f} ms; gateway p50 {pct(seq_gw, .5)*1e3:.2f} ms p99 "
          f"{pct(seq_gw, .99)*1e3:.2f} ms; added p50 {added50:.2f} ms, added p99 {added99:.2f} ms "
          f"(ratio p50 {pct(seq_gw, .5)/pct(seq_up, .5):.2f}x); mean added "
          f"{(statistics.mean(seq_gw) - statistics.mean(seq_up))*1e3:.2f} ms")
    print(f"under load (64 clients, 1 worker): added p50 {(pct(gw1[0], .5) - pct(direct[0], .5))*1e3:.2f} ms, "
          f"added p99 {(pct(gw1[0], .99) - pct(direct[0], .99))*1e3:.2f} ms; throughput ratio "
          f"{(len(gw1[0])/gw1[2]) / (len(direct[0])/direct[2]):.2f} of direct")
    return 0


if __name__ == "__main__":
    sys.exit(main())
