"""The recorded-LLM server speaks the chat-completions protocol: checked with the official ``openai`` client."""

from __future__ import annotations

import asyncio
import math

import openai
import pytest

from llm_servers import QUESTION, TABLE
from tierswitch.testing import RecordedServer
from tierswitch.testing.recorded_llm import pieces


@pytest.fixture(scope="module")
def server():
    with RecordedServer.gsm8k(["mixtral", "gpt4"]) as s:
        yield s


@pytest.fixture()
def client(server):
    server.faults.clear()
    with openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0) as c:
        yield c


def test_table_is_the_decontaminated_gsm8k_data():
    assert len(TABLE) == 1307 and TABLE.models == ("mixtral", "gpt4")
    assert sum(r.correct["mixtral"] for r in TABLE) / 1307 == pytest.approx(0.6373, abs=5e-5)
    assert sum(r.correct["gpt4"] for r in TABLE) / 1307 == pytest.approx(0.8577, abs=5e-5)
    assert not any(r.prompt.startswith("Janet\u2019s ducks") for r in TABLE)  # a contaminated prompt is gone


def test_sync_completion_usage_and_models(client):
    out = client.chat.completions.create(model="gpt4", messages=[{"role": "user", "content": QUESTION}])
    answer = TABLE.get(QUESTION).answers["gpt4"]
    assert out.choices[0].message.content == answer and out.choices[0].finish_reason == "stop"
    assert out.usage.prompt_tokens == math.ceil(len(QUESTION) / 4)
    assert out.usage.completion_tokens == math.ceil(len(answer) / 4) == len(pieces(answer))
    assert out.choices[0].logprobs is None
    assert sorted(m.id for m in client.models.list()) == ["gpt4", "mixtral"]


def test_logprobs_when_asked(client):
    out = client.chat.completions.create(model="mixtral", messages=[{"role": "user", "content": QUESTION}],
                                         logprobs=True)
    tokens = out.choices[0].logprobs.content
    assert len(tokens) == out.usage.completion_tokens
    assert "".join(t.token for t in tokens) == out.choices[0].message.content
    assert all(-0.5 <= t.logprob <= 0 for t in tokens)


def test_streaming_with_usage(client):
    stream = client.chat.completions.create(model="mixtral", messages=[{"role": "user", "content": QUESTION}],
                                            stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == TABLE.get(QUESTION).answers["mixtral"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == len(pieces(text))


def test_async_client_concurrently(server):
    async def main():
        async with openai.AsyncOpenAI(base_url=server.base_url, api_key="unused", max_retries=0) as c:
            rows = TABLE.rows[:16]
            outs = await asyncio.gather(*(c.chat.completions.create(
                model="mixtral", messages=[{"role": "user", "content": r.prompt}]) for r in rows))
            return [(o.choices[0].message.content, r.answers["mixtral"]) for o, r in zip(outs, rows)]

    assert all(a == b for a, b in asyncio.run(main()))


def test_errors_map_to_the_clients_exceptions(server, client):
    server.faults.push("429", retry_after=7)
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="mixtral", messages=[{"role": "user", "content": QUESTION}])
    assert info.value.response.headers["retry-after"] == "7"
    server.faults.push("500")
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="mixtral", messages=[{"role": "user", "content": QUESTION}])
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.chat.completions.create(model="gpt-5", messages=[{"role": "user", "content": QUESTION}])
    with pytest.raises(openai.BadRequestError, match="no recorded answer"):
        client.chat.completions.create(model="mixtral", messages=[{"role": "user", "content": "unrecorded"}])
    # and the server keeps serving
    out = client.chat.completions.create(model="mixtral", messages=[{"role": "user", "content": QUESTION}])
    assert out.choices[0].message.content


def test_truncated_stream_is_visible_to_the_client(server, client):
    server.faults.push("truncated")
    stream = client.chat.completions.create(model="mixtral", messages=[{"role": "user", "content": QUESTION}],
                                            stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert 0 < len(text) < len(TABLE.get(QUESTION).answers["mixtral"])


def test_latency_model_scales():
    from tierswitch.testing import LatencyModel

    assert LatencyModel(0.045, 0.3, scale=0).total(100) == 0
    assert LatencyModel(0.045, 0.3, scale=0.5).total(100) == pytest.approx(0.5 * (0.3 + 4.5))
