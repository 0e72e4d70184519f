"""The bad-input and fault matrix for language-model tiers, through a ``Router`` over two recorded servers: each
case is a named error or a fallback, nothing half-written is cached, and the router keeps serving."""

from __future__ import annotations

import asyncio

import pytest

from llm_servers import QUESTION, TABLE, tier
from tierswitch.errors import AllTiersFailed, InputTooLarge, InvalidInput, UpstreamProtocolError
from tierswitch.policies import FormatCheck, VerifiedCascade
from tierswitch.router import Router
from tierswitch.testing import RecordedServer

ROW = TABLE.get(QUESTION)


@pytest.fixture(scope="module")
def servers():
    with RecordedServer.gsm8k(["mixtral"]) as small, RecordedServer.gsm8k(["gpt4"]) as full:
        yield small, full


@pytest.fixture(autouse=True)
def _clear(servers):
    for s in servers:
        s.faults.clear()


def router(servers, fallback=True, **small_kwargs):
    small, full = servers
    tiers = [tier(small, "mixtral", **small_kwargs), tier(full, "gpt4")]
    return Router(tiers, policy=VerifiedCascade(FormatCheck.ends_with_number(), {"mixtral": 0.5}),
                  fallback=fallback)


def cached(r, digest, name):
    return r.cache.get(name, r.tiers[name].version, digest)


def serves(r):
    """The router still answers a fresh request correctly."""
    q = TABLE.rows[5].prompt
    out = r(q)
    assert out.output == TABLE.get(q).answers[out.tier]


@pytest.mark.parametrize("payload", [
    [{"role": "user"}],
    [{"role": "robot", "content": "hi"}],
    [{"role": "user", "content": [{"type": "video", "url": "x"}]}],
    {"messages": "hi"},
    {"messages": [{"role": "user", "content": QUESTION}], "stream": True},
    {"messages": [{"role": "user", "content": QUESTION}], "temperature": float("nan")},
])
def test_malformed_messages_are_named_errors_and_call_nothing(servers, payload):
    r = router(servers)
    before = sum(s.requests for s in servers)
    with pytest.raises(InvalidInput):
        r(payload)
    assert sum(s.requests for s in servers) == before
    serves(r)


def test_oversize_prompts(servers):
    small, _ = servers
    r = router(servers, max_length=64)  # the small model's context window, in tokens
    assert r(QUESTION).tier == "mixtral"  # ~31 tokens: fits
    long_row = next(row for row in TABLE if len(row.prompt) > 300)  # > 75 tokens: only gpt4 can take it
    before = small.requests
    out = r(long_row.prompt)
    assert out.tier == "gpt4" and out.output == long_row.answers["gpt4"] and small.requests == before
    tight = Router([tier(small, "mixtral")], policy=VerifiedCascade(FormatCheck.ends_with_number(), {}),
                   max_input_bytes=256)
    with pytest.raises(InputTooLarge):
        tight("y" * 1000)
    assert small.requests == before
    serves(r)


def test_invalid_json_upstream_falls_back_and_caches_only_the_good_answer(servers):
    small, _ = servers
    r = router(servers)
    small.faults.push("invalid_json")
    out = r(QUESTION)
    assert out.tier == "gpt4" and out.output == ROW.answers["gpt4"]
    assert any(s.kind == "failure" and "invalid JSON" in s.detail for s in out.trace)
    assert cached(r, out.digest, "mixtral") is None and cached(r, out.digest, "gpt4").output == out.output
    serves(r)


@pytest.mark.parametrize("fault", ["truncated", "no_choices", "500"])
def test_broken_answers_fall_back(servers, fault):
    small, _ = servers
    r = router(servers, retries=0)
    small.faults.push(fault)
    out = r(QUESTION)
    assert out.tier == "gpt4" and cached(r, out.digest, "mixtral") is None
    serves(r)


def test_truncated_stream_yields_no_prediction(servers):
    small, _ = servers
    t = tier(small, "mixtral")
    small.faults.push("truncated")
    seen = []

    async def main():
        async for item in t.astream(QUESTION):
            seen.append(item)

    with pytest.raises(UpstreamProtocolError, match="truncated"):
        asyncio.run(main())
    assert seen and all(isinstance(s, str) for s in seen)  # deltas, but never a final Prediction
    assert "".join(seen) != ROW.answers["mixtral"]


def test_429_storm_retries_then_falls_back_and_recovers(servers):
    small, _ = servers
    slept = []
    r = router(servers, retries=2, sleep=slept.append)
    small.faults.push("429", times=30, retry_after=0.5)
    outs = [r(row.prompt) for row in TABLE.rows[10:20]]
    assert all(o.tier == "gpt4" for o in outs) and slept == [0.5, 0.5] * 10
    assert all(cached(r, o.digest, "mixtral") is None for o in outs)
    small.faults.clear()
    assert r(TABLE.rows[30].prompt).tier in ("mixtral", "gpt4")
    serves(r)


def test_hanging_upstream_times_out_and_falls_back(servers):
    small, _ = servers
    r = router(servers, timeout_s=0.3)
    small.faults.push("hang", times=3)

    async def main():
        return await asyncio.gather(*(r.acall(row.prompt) for row in TABLE.rows[40:43]))

    outs = asyncio.run(main())
    assert all(o.tier == "gpt4" for o in outs)
    assert all(any("did not answer within 0.3s" in s.detail for s in o.trace) for o in outs)
    serves(r)


def test_rejected_request_carries_the_server_message(servers):
    r = router(servers, fallback=False)
    with pytest.raises(AllTiersFailed, match="no recorded answer for this prompt"):
        r("a question nobody recorded")
    serves(r)


def test_truncated_stream_through_the_router_is_interrupted_and_not_cached(servers):
    from tierswitch.errors import StreamInterrupted
    from tierswitch.policies import Fixed

    _, full = servers
    r = Router([tier(full, "gpt4")], policy=Fixed("gpt4"))  # the answering call streams (nothing can refuse it)
    full.faults.push("truncated")

    async def main(q):
        return [item async for item in r.astream(q)]

    with pytest.raises(StreamInterrupted):
        asyncio.run(main(QUESTION))
    digest = r(TABLE.rows[5].prompt).digest  # keeps serving
    assert digest
    *deltas, final = asyncio.run(main(QUESTION))  # not cached: streamed again, whole this time
    assert not final.cached and "".join(deltas) == final.output == ROW.answers[final.tier]


def test_sampled_answers_are_not_cached_unless_configured(servers):
    small, _ = servers
    q = TABLE.rows[7].prompt
    sampled = {"messages": [{"role": "user", "content": q}], "temperature": 0.7}
    r = router(servers)
    before = small.requests
    r(sampled)
    assert not r(sampled).cached and small.requests - before == 2
    seeded = {**sampled, "seed": 1}
    r(seeded)
    assert r(seeded).cached
    r2 = router(servers, cache_sampled=True)
    r2(sampled)
    assert r2(sampled).cached


def test_a_bad_item_in_a_batch_fails_alone(servers):
    r = router(servers)
    good = TABLE.rows[3].prompt
    for bad in ([{"role": "robot", "content": "x"}], [{"content": [{"type": "video"}]}],
                {"messages": [{"role": "user", "content": good}], "temperature": float("nan")}):
        before = sum(s.requests for s in servers)
        out = r.batch([good, bad], return_exceptions=True)
        assert out[0].output == TABLE.get(good).answers[out[0].tier] and isinstance(out[1], InvalidInput)
        out = asyncio.run(r.abatch([good, bad], return_exceptions=True))
        assert isinstance(out[1], InvalidInput)
        assert sum(s.requests for s in servers) - before <= 2  # only the good one went upstream (once, then cached)
