"""The gateway over OpenAI-compatible tiers (``kind: openai``) on a recorded-LLM server: real answers through the
official client, SSE passed through token by token on a pinned route, readiness following the upstream."""

from __future__ import annotations

import httpx
import openai
import pytest
from tests.gateway_proc import gateway

from tierswitch.testing import RecordedServer, load_gsm8k

ROW, OTHER = load_gsm8k().rows[3], load_gsm8k().rows[4]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory):
    server = RecordedServer.gsm8k(["mixtral"])
    config = {"tiers": {"base": {"kind": "openai", "base_url": server.base_url, "model": "mixtral",
                                 "params": {"temperature": 0},
                                 "cost": {"input_per_mtok": 0.24, "output_per_mtok": 0.24}}},
              "policy": {"kind": "fixed", "tier": "base"}, "gateway": {"reload_interval_s": 0}}
    try:
        with gateway(config, tmp_path_factory.mktemp("gw-llm")) as gw:
            yield gw, server
    finally:
        server.stop()


def test_recorded_answer_through_the_gateway(setup) -> None:
    gw, _ = setup
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(model="tierswitch/auto",
                                                           messages=[{"role": "user", "content": ROW.prompt}])
    answer = raw.parse()
    assert answer.choices[0].message.content == ROW.answers["mixtral"]
    assert raw.headers["x-tierswitch-tier"] == "base" and float(raw.headers["x-tierswitch-cost"]) > 0


def test_pinned_stream_passes_tokens_through(setup) -> None:
    gw, _ = setup
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)
    messages = [{"role": "user", "content": OTHER.prompt}]  # not asked before: a miss, streamed token by token
    chunks = list(client.chat.completions.create(model="base", messages=messages, stream=True))
    deltas = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(deltas) > 5 and "".join(deltas) == OTHER.answers["mixtral"]
    assert chunks[-1].model_extra["tierswitch"]["cost"] > 0
    again = list(client.chat.completions.create(model="base", messages=messages, stream=True))
    cached = [c.choices[0].delta.content for c in again if c.choices and c.choices[0].delta.content]
    assert "".join(cached) == OTHER.answers["mixtral"]  # complete, it was cached: served again whole
    assert again[-1].model_extra["tierswitch"]["cached"] is True


def test_readiness_follows_the_upstream(setup) -> None:
    gw, server = setup
    assert httpx.get(gw.url + "/readyz").status_code == 200
    server.stop()
    r = httpx.get(gw.url + "/readyz")
    assert r.status_code == 503 and "tier base" in r.json()["error"]["message"]
    assert httpx.get(gw.url + "/healthz").status_code == 200  # alive, just not ready
