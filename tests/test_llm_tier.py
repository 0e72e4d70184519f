"""``OpenAITier`` against a real recorded-LLM server: sync, async and streaming paths, cost, confidence, labels,
retries honouring Retry-After, error mapping, cacheability, config parsing."""

from __future__ import annotations

import asyncio
import math

import pytest

from llm_servers import GPT4_PRICE, MIXTRAL_PRICE, QUESTION, TABLE, tier
from tierswitch.errors import (
    ConfigError,
    InvalidMessages,
    TierFailure,
    TierTimeout,
    UpstreamProtocolError,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamUnavailable,
)
from tierswitch.reliability import TransientTierError
from tierswitch.testing import LatencyModel, RecordedRow, RecordedServer, RecordedTable, build_app
from tierswitch.tiers.openai import OpenAITier, TokenPrices, parse_label
from tierswitch.tiers.openai_protocol import parse_retry_after
from tierswitch.types import Prediction, Usage

ANSWER = TABLE.get(QUESTION).answers["mixtral"]
USAGE = Usage(math.ceil(len(QUESTION) / 4), math.ceil(len(ANSWER) / 4))


@pytest.fixture(scope="module")
def server():
    with RecordedServer.gsm8k(["mixtral", "gpt4"]) as s:
        yield s


@pytest.fixture(autouse=True)
def _clear(server):
    server.faults.clear()


def test_sync_path_prices_usage_and_uses_its_own_client(server):
    t = tier(server, "mixtral", confidence=None)
    p = t.predict_one(QUESTION)
    assert p.output == ANSWER and p.usage == USAGE and p.confidence is None
    assert p.cost == MIXTRAL_PRICE.cost(USAGE) and p.tier_version == "mixtral"
    assert t._client is not None and t._aclient is None  # the sync client, not the private loop
    t.close()


def test_async_path_batch_and_logprob_confidence(server):
    rows = TABLE.rows[:8]
    t = tier(server, "gpt4", confidence="mean")

    async def main():
        try:
            return await t.apredict([r.prompt for r in rows])
        finally:
            await t.aclose()

    preds = asyncio.run(main())
    assert [p.output for p in preds] == [r.answers["gpt4"] for r in rows]
    assert all(0.6 < p.confidence <= 1 for p in preds)  # synthetic logprobs in [-0.5, 0]
    mins = [tier(server, "gpt4", confidence="min").predict_one(r.prompt).confidence for r in rows[:2]]
    assert all(m <= p.confidence for m, p in zip(mins, preds))


def test_constructor_stores_and_does_not_act():
    t = OpenAITier("x", "http://127.0.0.1:9/v1", "m", api_key_env="TIERSWITCH_TEST_UNSET_KEY")
    assert t._client is None and t._aclient is None
    with pytest.raises(TierFailure, match="TIERSWITCH_TEST_UNSET_KEY is not set"):  # the router falls back
        t.predict_one("hi")


def test_api_key_from_the_environment_and_headers(server, monkeypatch):
    monkeypatch.setenv("TIERSWITCH_TEST_KEY", "sk-test-123")
    t = tier(server, "mixtral", api_key_env="TIERSWITCH_TEST_KEY", headers={"X-Team": "ml"})
    t.predict_one(QUESTION)
    assert server.state.last_headers["authorization"] == "Bearer sk-test-123"
    assert server.state.last_headers["x-team"] == "ml"


def test_stream_yields_deltas_then_one_prediction(server):
    t = tier(server, "mixtral")

    async def main():
        return [item async for item in t.astream({"messages": [{"role": "user", "content": QUESTION}],
                                                  "temperature": 0})]

    items = asyncio.run(main())
    *deltas, final = items
    assert all(isinstance(d, str) for d in deltas) and "".join(deltas) == ANSWER
    assert isinstance(final, Prediction) and final.output == ANSWER and final.usage == USAGE
    assert final.cost == MIXTRAL_PRICE.cost(USAGE)


def test_no_usage_is_estimated_and_counted(server):
    t = tier(server, "mixtral")
    server.faults.push("no_usage")
    p = t.predict_one(QUESTION)
    assert p.usage == USAGE and t.usage_estimated == 1  # estimate = the server's own approximation here


def test_429_storm_retries_honouring_retry_after_then_answers(server):
    slept = []
    t = tier(server, "mixtral", retries=3, sleep=slept.append)
    server.faults.push("429", times=3, retry_after=1.5)
    before = server.requests
    assert t.predict_one(QUESTION).output == ANSWER
    assert slept == [1.5, 1.5, 1.5] and server.requests - before == 4


def test_retries_are_bounded_and_the_error_is_transient(server):
    slept = []
    t = tier(server, "mixtral", retries=2, backoff_s=0.25, sleep=slept.append)
    server.faults.push("503", times=5)
    with pytest.raises(TierFailure) as info:
        t.predict_one(QUESTION)
    assert isinstance(info.value.__cause__, UpstreamUnavailable) and isinstance(info.value.__cause__,
                                                                                 TransientTierError)
    assert slept == [0.25, 0.5]  # exponential backoff without Retry-After
    server.faults.clear()
    server.faults.push("429", retry_after=120)  # longer than max_retry_delay_s: fail at once, no sleep
    slept.clear()
    with pytest.raises(TierFailure) as info:
        t.predict_one(QUESTION)
    assert isinstance(info.value.__cause__, UpstreamRateLimited) and info.value.__cause__.retry_after == 120
    assert slept == []


def test_async_retries_use_the_injected_asleep(server):
    slept = []

    async def asleep(s):
        slept.append(s)

    t = tier(server, "mixtral", retries=2, asleep=asleep)
    server.faults.push("429", times=2, retry_after=2)
    assert asyncio.run(t.apredict_one(QUESTION)).output == ANSWER and slept == [2, 2]


def test_4xx_carries_the_server_message_and_is_not_retried(server):
    slept = []
    t = OpenAITier("bad", server.base_url, "no-such-model", sleep=slept.append)
    with pytest.raises(UpstreamRejected, match="does not exist") as info:
        t.predict_one(QUESTION)
    assert info.value.status == 404 and info.value.tier == "bad" and slept == []


def test_protocol_errors_are_named(server):
    t = tier(server, "mixtral")
    for fault, match in [("invalid_json", "invalid JSON"), ("no_choices", "no choices"),
                         ("truncated", "invalid JSON")]:
        server.faults.push(fault)
        with pytest.raises(UpstreamProtocolError, match=match):
            t.predict_one(QUESTION)
    server.faults.push("truncated")

    async def stream():
        return [d async for d in t.astream(QUESTION)]

    with pytest.raises(UpstreamProtocolError, match=r"before 'data: \[DONE\]'"):
        asyncio.run(stream())


def test_connection_errors_and_timeouts_name_tier_and_url(server):
    dead = OpenAITier("dead", "http://127.0.0.1:9/v1", "m", retries=0)
    with pytest.raises(TierFailure, match="cannot reach http://127.0.0.1:9/v1/chat/completions") as info:
        dead.predict_one("hi")
    assert "'dead'" in str(info.value)
    slow = tier(server, "mixtral", timeout_s=0.2)
    server.faults.push("hang")
    with pytest.raises(TierTimeout, match=r"did not answer within 0.2s"):
        slow.predict_one(QUESTION)


@pytest.mark.parametrize("payload, field", [
    ([], "messages"),
    ([{"role": "user"}], "messages[0].content"),
    ([{"content": [{"type": "video"}]}], "messages[0].content[0].type"),
    ([{"role": "robot", "content": "x"}], "messages[0].role"),
    ([{"role": "user", "content": [{"type": "text", "text": 3}]}], "messages[0].content[0].text"),
    ([{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}], "messages[0].content[0].image_url.url"),
    ([{"role": "user", "content": "a"}, {"role": "tool", "content": "r"}], "messages[1].tool_call_id"),
    ({"prompt": "x"}, "messages"),
    ({"messages": [{"role": "user", "content": "x"}], "model": "gpt4"}, "model"),
    ({"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}, "max_tokens"),
    (42, "request"),
])
def test_malformed_input_names_the_field_and_sends_nothing(server, payload, field):
    t = tier(server, "mixtral")
    before = server.requests
    with pytest.raises(InvalidMessages) as info:
        t.predict_one(payload)
    assert info.value.field == field and server.requests == before


def test_multimodal_and_tool_messages_are_accepted(server):
    t = tier(server, "mixtral")
    messages = [{"role": "system", "content": "Solve it."},
                {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function",
                                                                       "function": {"name": "f", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "ok"},
                {"role": "user", "content": [{"type": "text", "text": QUESTION},
                                             {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}]}]
    assert t.predict_one(messages).output == ANSWER


def test_cacheable_follows_temperature_seed_and_config():
    t = OpenAITier("t", "http://127.0.0.1:9/v1", "m")
    assert not t.cacheable("hi")  # the protocol's default temperature is 1
    assert t.cacheable({"messages": [{"role": "user", "content": "hi"}], "temperature": 0})
    assert t.cacheable({"messages": [{"role": "user", "content": "hi"}], "temperature": 0.7, "seed": 3})
    assert OpenAITier("t", "http://127.0.0.1:9/v1", "m", params={"temperature": 0}).cacheable("hi")
    assert OpenAITier("t", "http://127.0.0.1:9/v1", "m", cache_sampled=True).cacheable("hi")


def test_estimate_cost_before_the_call():
    t = OpenAITier("t", "http://127.0.0.1:9/v1", "m", cost=TokenPrices(1.0, 2.0), params={"max_tokens": 100})
    assert t.estimate_usage("x" * 40) == Usage(10, 100)
    assert t.estimate_cost("x" * 40) == pytest.approx((10 * 1.0 + 100 * 2.0) / 1e6)
    assert t.estimate_usage({"messages": [{"role": "user", "content": "abcd"}], "max_tokens": 5}) == Usage(1, 5)


def test_labels_parse_the_answer_into_the_closed_set():
    assert parse_label(" Positive.", ["positive", "negative"]) == "positive"
    assert parse_label("The sentiment is negative", ["positive", "negative"]) == "negative"
    assert parse_label("positive or negative", ["positive", "negative"]) is None
    table = RecordedTable([RecordedRow("review: great", {"m": "Positive"}, {"m": True}),
                           RecordedRow("review: meh", {"m": "I cannot tell"}, {"m": False})])
    with RecordedServer(build_app(table, {"m": LatencyModel(scale=0)})) as s:
        t = OpenAITier("clf", s.base_url, "m", labels=["positive", "negative"], params={"temperature": 0})
        assert t.predict_one("review: great").output == "positive"
        with pytest.raises(UpstreamProtocolError, match="names none"):
            t.predict_one("review: meh")


def test_from_config_names_fields():
    t = OpenAITier.from_config("small", {"kind": "openai", "base_url": "http://h:1/v1", "model": "mix:8x7b",
                                         "cost": {"input_per_mtok": 0.24, "output_per_mtok": 0.5},
                                         "params": {"temperature": 0}, "confidence": "first", "retries": 1})
    assert t.prices == TokenPrices(0.24, 0.5) and t.confidence == "first" and t.version == "mix_8x7b"
    for config, field in [({"model": "m"}, "tiers.small.base_url"),
                          ({"base_url": "http://h/v1", "model": "m", "api_key": "sk"}, "tiers.small.api_key"),
                          ({"base_url": "http://h/v1", "model": "m", "confidence": "max"}, "tiers.small.confidence"),
                          ({"base_url": "http://h/v1", "model": "m", "cost": {"input_per_mtok": -1}},
                           "tiers.small.cost.input_per_mtok"),
                          ({"base_url": "http://h/v1", "model": "m", "params": {"model": "x"}}, "tiers.small.params"),
                          ({"base_url": "ftp://h", "model": "m"}, "tiers.small.base_url")]:
        with pytest.raises(ConfigError) as info:
            OpenAITier.from_config("small", config)
        assert info.value.field == field, (config, info.value)


def test_retry_after_http_date():
    assert parse_retry_after("3") == 3.0 and parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == pytest.approx(10.0)


def test_prices():
    assert GPT4_PRICE.cost(Usage(1_000_000, 0)) == pytest.approx(24.7)
    with pytest.raises(ConfigError, match="cost.output_per_mtok"):
        TokenPrices(1.0, math.nan)


def test_example_llm_config_builds_openai_tiers(server, monkeypatch):
    from pathlib import Path

    import yaml

    from tierswitch.router import Router

    config = yaml.safe_load((Path(__file__).resolve().parents[1] / "examples/configs/llm.yaml").read_text())
    for section in config["tiers"].values():
        section["base_url"] = server.base_url
    monkeypatch.setenv("BASE_API_KEY", "k1")
    monkeypatch.setenv("FULL_API_KEY", "k2")
    router = Router.from_config(config, {})
    assert all(isinstance(t, OpenAITier) for t in router.tiers.values())
    out = router(QUESTION)
    model = router.tiers[out.tier].model
    assert out.output == TABLE.get(QUESTION).answers[model] and out.cost > 0
    config["tiers"]["base"]["cost"] = {"input_per_mtok": "cheap"}
    with pytest.raises(ConfigError) as info:
        Router.from_config(config, {})
    assert info.value.field == "tiers.base.cost.input_per_mtok"


def test_default_params_are_checked_like_a_requests():
    with pytest.raises(ConfigError) as info:
        OpenAITier("t", "http://127.0.0.1:9/v1", "m", params={"temperature": "hot"})
    assert info.value.field == "params.temperature"
    with pytest.raises(ConfigError) as info:
        OpenAITier.from_config("t", {"base_url": "http://h/v1", "model": "m", "params": {"max_tokens": 0}})
    assert info.value.field == "tiers.t.params.max_tokens"
