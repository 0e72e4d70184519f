"""``tierswitch demo --workload gsm8k``: LLM routing through the gateway, as a user's application would see it.

Starts two recorded-LLM servers (real recorded GSM8K answers: Mixtral as ``base``, GPT-4 as ``full``; the seed's
per-token latencies times ``--latency-scale``), starts ``tierswitch serve`` over them (a subprocess on a free
loopback port), sends the questions through the official ``openai`` client for three routes (``base`` pinned,
``full`` pinned, ``tierswitch/auto``: a verified cascade that escalates when Mixtral's answer does not end in its
``#### N`` answer line), and prints and writes the table (accuracy, mean cost, cost reduction, latency p50/p99
per request and per token, tokens, gateway memory) plus a plot.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tierswitch.errors import ConfigError

__all__ = ["main", "run"]

PRICES = {"base": {"input_per_mtok": 0.24, "output_per_mtok": 0.24},  # the replay spec's $ per million tokens
          "full": {"input_per_mtok": 24.7, "output_per_mtok": 24.7}}
MODELS = {"base": "mixtral", "full": "gpt4"}
GSM8K_FORMAT = r"####\s*-?\$?[\d,]+(?:\.\d+)?\s*$"  # Mixtral's few-shot answers end "#### 18"; else escalate
ROUTES = (("always-base", "base"), ("always-full", "full"), ("router", "tierswitch/auto"))


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tierswitch demo --workload gsm8k",
                                description="LLM routing through the gateway over recorded GSM8K answers")
    p.add_argument("--workload", choices=("gsm8k", "llm"), default="gsm8k")
    p.add_argument("--limit", type=int, default=None, help="first N of the 1,307 questions (default: all)")
    p.add_argument("--latency-scale", type=float, default=0.1,
                   help="times the seed's per-token latencies (1.0: ~15 ms/token Mixtral, ~45 ms/token GPT-4)")
    p.add_argument("--concurrency", type=int, default=32, help="client threads sending requests")
    p.add_argument("--out", type=Path, default=Path("tierswitch-demo"))
    p.add_argument("--quiet", action="store_true")
    return p


def config(base_url: str, full_url: str) -> dict[str, Any]:
    tiers = {name: {"kind": "openai", "base_url": url, "model": MODELS[name], "params": {"temperature": 0},
                    "cost": PRICES[name], "timeout_s": 60}
             for name, url in (("base", base_url), ("full", full_url))}
    return {"tiers": tiers,
            "policy": {"kind": "verified_cascade", "signal": {"kind": "format", "regex": GSM8K_FORMAT},
                       "thresholds": {"base": 0.5}},
            "cache": {"kind": "none"},  # every request is answered by the tiers, so the three runs compare fairly
            "gateway": {"reload_interval_s": 0, "limits": {"timeout_s": 120}}}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_gateway(path: Path, log: Any) -> tuple[subprocess.Popen[bytes], str]:
    import httpx

    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tierswitch.serve", str(path), "--port", str(port),
                             "--no-access-log"], stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:  # an external process coming up: the condition is /readyz answering
        if proc.poll() is not None:
            raise RuntimeError(f"the gateway exited with {proc.returncode}; see {log.name}")
        try:
            if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"the gateway did not get ready in 60 s; see {log.name}")
        time.sleep(0.1)


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _ask(client: Any, model: str, prompt: str) -> dict[str, Any]:
    started = time.perf_counter()
    answer = client.chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}],
                                            temperature=0)
    latency = time.perf_counter() - started
    info = (answer.model_extra or {}).get("tierswitch", {})
    return {"text": answer.choices[0].message.content or "", "tier": info.get("tier", answer.model),
            "cost": float(info.get("cost", 0.0)), "latency_s": latency}


def _summary(name: str, rows: list[dict[str, Any]], correct: list[bool], rss: float, full_cost: float | None,
             approx_tokens: Any) -> dict[str, Any]:
    import numpy as np

    lat = np.array([r["latency_s"] for r in rows])
    tokens = np.array([max(1, approx_tokens(r["text"])) for r in rows])
    cost = float(np.mean([r["cost"] for r in rows]))
    return {"config": name, "n": len(rows), "accuracy": float(np.mean(correct)), "mean_cost": cost,
            "cost_reduction": None if full_cost is None else 1 - cost / full_cost,
            "full_share": float(np.mean([r["tier"] == "full" for r in rows])),
            "p50_ms": float(np.percentile(lat, 50) * 1e3), "p99_ms": float(np.percentile(lat, 99) * 1e3),
            "p50_ms_per_token": float(np.percentile(lat / tokens, 50) * 1e3),
            "p99_ms_per_token": float(np.percentile(lat / tokens, 99) * 1e3),
            "mean_completion_tokens": float(tokens.mean()), "gateway_rss_mb": rss}


def _table(results: list[dict[str, Any]]) -> str:
    lines = ["| config | n | accuracy | mean cost ($) | cost reduction | GPT-4 share | p50 ms | p99 ms | "
             "p50 ms/token | p99 ms/token | completion tokens | gateway RSS MB |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        red = "-" if r["cost_reduction"] is None else f"{r['cost_reduction']:.1%}"
        lines.append(f"| {r['config']} | {r['n']} | {r['accuracy']:.3f} | {r['mean_cost']:.6f} | {red} | "
                     f"{r['full_share']:.1%} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['p50_ms_per_token']:.2f} | "
                     f"{r['p99_ms_per_token']:.2f} | {r['mean_completion_tokens']:.0f} | {r['gateway_rss_mb']:.0f} |")
    return "\n".join(lines)


def _plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for r in results:
        ax.scatter(r["mean_cost"] * 1e3, r["accuracy"], s=60)
        ax.annotate(r["config"], (r["mean_cost"] * 1e3, r["accuracy"]), textcoords="offset points", xytext=(6, 4))
    ax.set_xlabel("mean cost per 1,000 requests ($)")
    ax.set_ylabel("accuracy (GSM8K)")
    ax.set_title("GSM8K through tierswitch serve (recorded Mixtral / GPT-4)")
    ax.grid(alpha=0.3)
    ax.margins(x=0.2, y=0.1)  # room for the labels
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    _require_serve_extra()
    import openai
    import yaml

    from tierswitch.testing import RecordedServer, load_gsm8k
    from tierswitch.tiers.chat import approx_tokens_of

    def say(*parts: Any) -> None:
        if not args.quiet:
            print(*parts, file=sys.stderr)

    table = load_gsm8k()
    rows = table.rows[: args.limit] if args.limit else table.rows
    args.out.mkdir(parents=True, exist_ok=True)
    with RecordedServer.gsm8k(["mixtral"], scale=args.latency_scale) as small, \
            RecordedServer.gsm8k(["gpt4"], scale=args.latency_scale) as big:
        tmp = Path(tempfile.mkdtemp(prefix="tierswitch-demo-llm-"))
        path = tmp / "router.yaml"
        path.write_text(yaml.safe_dump(config(small.base_url, big.base_url), sort_keys=False))
        with open(tmp / "gateway.log", "wb") as log:
            proc, url = _start_gateway(path, log)
            say(f"recorded servers {small.base_url} {big.base_url}; gateway {url} (pid {proc.pid}); "
                f"{len(rows)} questions, latency scale {args.latency_scale}")
            try:
                client = openai.OpenAI(base_url=url + "/v1", api_key="demo", max_retries=0, timeout=120)
                results: list[dict[str, Any]] = []
                full_cost: float | None = None
                for name, model in ROUTES:
                    started = time.perf_counter()
                    with ThreadPoolExecutor(args.concurrency) as pool:
                        answers = list(pool.map(_ask, [client] * len(rows), [model] * len(rows),
                                                [row.prompt for row in rows]))
                    correct = [row.correct[MODELS[a["tier"]]] for row, a in zip(rows, answers)]
                    summary = _summary(name, answers, correct, _rss_mb(proc.pid), full_cost, approx_tokens_of)
                    if name == "always-full":
                        full_cost = summary["mean_cost"]
                        results[0]["cost_reduction"] = 1 - results[0]["mean_cost"] / full_cost
                        summary["cost_reduction"] = 0.0
                    results.append(summary)
                    say(f"  {name}: {len(rows)} requests in {time.perf_counter() - started:.1f}s, accuracy "
                        f"{summary['accuracy']:.3f}")
            finally:
                proc.terminate()
                proc.wait(timeout=30)
    text = _table(results)
    print(text)
    (args.out / "gsm8k-gateway.md").write_text(text + "\n")
    (args.out / "gsm8k-gateway.json").write_text(json.dumps(results, indent=2))
    _plot(results, args.out / "gsm8k-gateway.png")
    say(f"wrote {args.out / 'gsm8k-gateway.md'}, .json and .png")
    return results


def main(argv: Sequence[str] | None = None) -> int:
    run(_parser().parse_args(argv))
    return 0


def _require_serve_extra() -> None:
    """The LLM demo drives the gateway (Starlette, uvicorn) with the official openai client: the ``serve`` extra."""
    import importlib.util

    missing = [m for m in ("openai", "starlette", "uvicorn") if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError("demo.workload", f"the gsm8k demo needs {', '.join(missing)} (the serve extra): "
                                           "pip install -e '.[serve]' (or 'tierswitch[serve]'), then run it again")
