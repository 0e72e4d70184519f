"""End to end: the 1,307 decontaminated GSM8K questions routed through a ``Router`` over two ``OpenAITier``s
(Mixtral base, GPT-4 full) pointed at two recorded-LLM servers (real HTTP, real JSON, latency scale 0), with a
verifier policy (a format check on Mixtral's answer). The answers, decisions, accuracy and cost must be exactly
what the replay benchmark computes from the same recorded table for the same decisions."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from llm_servers import GPT4_PRICE, MIXTRAL_PRICE
from tierswitch.bench.spec import load_spec
from tierswitch.bench.table import load_replay
from tierswitch.policies import FormatCheck, VerifiedCascade
from tierswitch.router import Router
from tierswitch.testing import RecordedServer
from tierswitch.tiers.openai import OpenAITier
from tierswitch.types import Prediction

ROOT = Path(__file__).resolve().parents[1]
MAXC = 16  # pooled connections per tier: the servers share this process (and its GIL) with the client
GSM8K_FORMAT = r"####\s*-?\$?[\d,]+(?:\.\d+)?\s*$"  # Mixtral's few-shot answer format ends "#### 18"


@pytest.fixture(scope="module")
def replay():
    return load_replay(load_spec(ROOT / "examples" / "gsm8k" / "replay.yaml", base_dir=ROOT))


@pytest.fixture(scope="module")
def servers():
    with RecordedServer.gsm8k(["mixtral"]) as small, RecordedServer.gsm8k(["gpt4"]) as full:
        yield small, full


def build(servers):
    small, full = servers
    tiers = [OpenAITier("mixtral", small.base_url, "mixtral", cost=MIXTRAL_PRICE, params={"temperature": 0},
                        confidence=None, max_connections=MAXC),
             OpenAITier("gpt4", full.base_url, "gpt4", cost=GPT4_PRICE, params={"temperature": 0}, confidence=None,
                        max_connections=MAXC)]
    policy = VerifiedCascade(FormatCheck(GSM8K_FORMAT, name="gsm8k_format"), {"mixtral": 0.5})
    router = Router(tiers, policy=policy, fallback=False)
    predictions: list[dict[str, Prediction]] = []
    router.add_hook(lambda record: predictions.append(dict(record.predictions)))
    return router, policy, predictions


def expected(replay):
    """The replay benchmark's view of the same policy: escalate exactly when Mixtral's recorded answer fails the
    format check; a cascade that escalates pays for both tiers."""
    from tierswitch.testing import load_gsm8k

    table = load_gsm8k()
    check = FormatCheck(GSM8K_FORMAT)
    escalate = np.array([check.pattern.search(table.get(q).answers["mixtral"]) is None for q in replay.inputs])
    answered = escalate.astype(int)
    rows = np.arange(len(replay))
    accuracy = float(replay.outcomes[rows, answered].mean())
    costs = replay.costs[:, 0] + np.where(escalate, replay.costs[:, 1], 0.0)
    return table, escalate, accuracy, costs


def check_against_replay(replay, routed, predictions, policy):
    table, escalate, accuracy, costs = expected(replay)
    assert len(routed) == len(replay) == 1307
    assert [r.tier for r in routed] == ["gpt4" if e else "mixtral" for e in escalate]
    for q, r in zip(replay.inputs, routed):  # the exact recorded text came back over HTTP/JSON
        assert r.output == table.get(q).answers[r.tier]
    got_accuracy = float(np.mean([replay.outcomes[i, replay.tiers.index(r.tier)] for i, r in enumerate(routed)]))
    got_costs = np.array([r.cost for r in routed])
    assert got_accuracy == accuracy
    assert np.array_equal(got_costs, costs)  # bit for bit: usage tokens x per-token prices
    assert float(got_costs.mean()) == float(costs.mean())
    # the tokens the servers reported are the replay's approximate tokens
    for i, preds in enumerate(predictions):
        p = preds["mixtral"]
        assert p.usage is not None and p.cost == replay.costs[i, 0]
    assert policy.counts[("gsm8k_format", False)] == int(escalate.sum())
    assert policy.counts[("gsm8k_format", True)] == int((~escalate).sum())
    return got_accuracy, float(got_costs.mean()), float(escalate.mean())


@pytest.mark.slow
def test_gsm8k_through_two_recorded_servers_reproduces_the_replay(replay, servers):
    router, policy, predictions = build(servers)
    routed = [router(q) for q in replay.inputs]
    accuracy, cost, share = check_against_replay(replay, routed, predictions, policy)
    always_full = float(replay.costs[:, 1].mean())
    print(f"\nGSM8K over HTTP, format-check cascade: accuracy {accuracy:.4f}, mean cost ${cost * 1e3:.4f} per 1k "
          f"requests, GPT-4 share {share:.3f}, cost reduction vs always-GPT-4 {1 - cost / always_full:.3f}")
    # cached on the second pass: same answers, no HTTP request
    small, full = servers
    before = small.requests + full.requests
    again = [router(q) for q in replay.inputs[:50]]
    assert all(r.cached for r in again) and small.requests + full.requests == before
    # the explanation names the signal that escalated
    escalated = [r for r in routed if r.tier == "gpt4"][-1]  # the policy remembers the last 1,024 verdicts
    key = (escalated.digest, "mixtral")
    assert policy.last_verdicts[key].detail().startswith("gsm8k_format 0.000 < 0.5")
    assert any(s.kind == "escalate" and s.detail == "mixtral gsm8k_format 0.000 < 0.5" for s in escalated.trace)


@pytest.mark.slow
def test_gsm8k_over_the_async_path_reproduces_the_replay(replay, servers):
    router, policy, predictions = build(servers)

    async def main():
        sem = asyncio.Semaphore(MAXC)

        async def one(q):
            async with sem:
                return await router.acall(q)

        return await asyncio.gather(*(one(q) for q in replay.inputs))

    routed = asyncio.run(main())
    table, escalate, accuracy, costs = expected(replay)
    assert [r.tier for r in routed] == ["gpt4" if e else "mixtral" for e in escalate]
    assert float(np.mean([replay.outcomes[i, replay.tiers.index(r.tier)] for i, r in enumerate(routed)])) == accuracy
    assert np.array_equal(np.array([r.cost for r in routed]), costs)


@pytest.mark.slow
def test_gsm8k_over_batch_and_abatch_reproduces_the_replay(replay, servers):
    _, escalate, accuracy, costs = expected(replay)
    tiers_expected = ["gpt4" if e else "mixtral" for e in escalate]
    router, _, _ = build(servers)
    routed = router.batch(replay.inputs)
    assert [r.tier for r in routed] == tiers_expected and np.array_equal([r.cost for r in routed], costs)
    router, _, _ = build(servers)
    routed = asyncio.run(router.abatch(replay.inputs))
    assert [r.tier for r in routed] == tiers_expected and np.array_equal([r.cost for r in routed], costs)
    assert float(np.mean([replay.outcomes[i, replay.tiers.index(r.tier)] for i, r in enumerate(routed)])) == accuracy


def test_streaming_through_the_router_matches_the_recorded_answers(replay, servers):
    router, _, _ = build(servers)
    table, escalate, _, costs = expected(replay)

    async def main(q):
        return [item async for item in router.astream(q)]

    for i in range(0, 1307, 131):  # ten questions, some escalated
        *deltas, final = asyncio.run(main(replay.inputs[i]))
        assert final.tier == ("gpt4" if escalate[i] else "mixtral")
        assert final.output == table.get(replay.inputs[i]).answers[final.tier]
        assert final.cost == costs[i] and final.usage is not None
        if deltas:
            assert "".join(deltas) == final.output
