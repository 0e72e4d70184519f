"""The gateway over real HTTP: the official openai client (sync, async, streaming) for shapes, raw httpx for every
error status and body. One gateway process (``tierswitch serve``) on a free loopback port for the module."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import openai
import pytest
from tests.gateway_proc import gateway

from tierswitch.serve.settings import hash_key

KEYS = {"main": "sk-main-123", "ratey": "sk-rate-456", "budgety": "sk-budget-789"}
CONFIG = {
    "tiers": {
        "base": {"kind": "python", "function": "tests.gateway_tiers:base", "cost": 1},
        "full": {"kind": "python", "function": "tests.gateway_tiers:full", "cost": 10,
                 "stream": "tests.gateway_tiers:full_stream"},
        "broken": {"kind": "python", "function": "tests.gateway_tiers:broken"},
        "slow": {"kind": "python", "function": "tests.gateway_tiers:slow", "stream": "tests.gateway_tiers:slow_stream"},
    },
    "policy": {"kind": "cascade", "thresholds": {"base": 0.8, "full": 0.5}},
    "router": {"fallback": False},
    "gateway": {
        "auth": {"keys_env": "GW_TEST_KEYS"},
        "limits": {"max_body_bytes": 20000, "timeout_s": 1.0,
                   "keys": {"ratey": {"rate": {"requests": 2, "per_s": 3600}},
                            "budgety": {"budget": {"cost": 2, "per_s": 3600}}}},
        "routes": {"router-strict": {"policy": {"kind": "fixed", "tier": "full"}}},
        "reload_interval_s": 0,
    },
}


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("gw-api")
    env = {"GW_TEST_KEYS": ",".join(f"{n}={hash_key(k)}" for n, k in KEYS.items()), "GW_SLOW_S": "2",
           "GW_MARK_DIR": str(tmp)}
    with gateway(CONFIG, tmp, env) as proc:
        proc.tmp = tmp  # type: ignore[attr-defined]
        yield proc


@pytest.fixture
def client(gw) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=KEYS["main"], max_retries=0, timeout=10)


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def auth(name: str = "main") -> dict[str, str]:
    return {"authorization": f"Bearer {KEYS[name]}"}


def test_chat_completion_shapes_headers_and_cache(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(model="tierswitch/auto", messages=user("an easy one"))
    answer = raw.parse()
    assert answer.choices[0].message.content == "base: an easy one"
    assert answer.choices[0].message.role == "assistant" and answer.object == "chat.completion"
    assert raw.headers["x-tierswitch-tier"] == "base" and raw.headers["x-tierswitch-cached"] == "false"
    assert float(raw.headers["x-tierswitch-cost"]) == 1.0
    info = answer.model_extra["tierswitch"]
    assert info["tier"] == "base" and info["request_id"] == raw.headers["x-tierswitch-request-id"]
    hard = client.chat.completions.create(model="tierswitch/auto", messages=user("a hard one"))
    assert hard.choices[0].message.content == "full: a hard one"
    assert hard.model_extra["tierswitch"]["cost"] == 11.0  # the cascade paid for base, then full
    again = client.chat.completions.with_raw_response.create(model="tierswitch/auto", messages=user("a hard one"))
    assert again.headers["x-tierswitch-cached"] == "true" and float(again.headers["x-tierswitch-cost"]) == 0.0


def test_pinned_tier_and_named_route(client: openai.OpenAI) -> None:
    pinned = client.chat.completions.create(model="full", messages=user("an easy pin"))
    assert pinned.model_extra["tierswitch"]["tier"] == "full"
    strict = client.chat.completions.create(model="router-strict", messages=user("easy but strict"))
    assert strict.model_extra["tierswitch"] == {**strict.model_extra["tierswitch"], "tier": "full",
                                                "route": "router-strict"}
    ids = [m.id for m in client.models.list().data]
    assert ids == ["tierswitch/auto", "base", "full", "broken", "slow", "router-strict"]


def test_async_client_concurrent(gw) -> None:
    async def go() -> list[str]:
        aclient = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key=KEYS["main"], max_retries=0)
        answers = await asyncio.gather(*[aclient.chat.completions.create(model="base", messages=user(f"q{i}"))
                                         for i in range(16)])
        await aclient.close()
        return [a.choices[0].message.content or "" for a in answers]

    assert asyncio.run(go()) == [f"base: q{i}" for i in range(16)]


def test_streaming_pinned_tier_token_by_token(client: openai.OpenAI) -> None:
    chunks = list(client.chat.completions.create(model="full", messages=user("stream this please"), stream=True,
                                                 stream_options={"include_usage": True}))
    deltas = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(deltas) == 4 and "".join(deltas) == "full: stream this please "
    last = chunks[-1]
    assert last.choices[0].finish_reason == "stop" and last.usage is not None
    assert last.model_extra["tierswitch"]["tier"] == "full" and last.model_extra["tierswitch"]["cost"] == 10.0


def test_streaming_auto_route(client: openai.OpenAI) -> None:
    chunks = list(client.chat.completions.create(model="tierswitch/auto", messages=user("easy stream"), stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == "base: easy stream" and chunks[-1].model_extra["tierswitch"]["tier"] == "base"


def test_route_endpoint_and_feedback(gw) -> None:
    r = httpx.post(gw.url + "/v1/route", json={"input": "easy text"}, headers=auth())
    assert r.status_code == 200
    body = r.json()
    assert body["output"] == "base: easy text" and body["tier"] == "base" and body["confidence"] == 0.95
    assert [s["kind"] for s in body["trace"]] == ["cache_miss", "decide", "call", "accept"]
    fb = httpx.post(gw.url + "/v1/feedback", json={"request_id": body["request_id"], "reward": 1.0}, headers=auth())
    assert fb.status_code == 200 and fb.json() == {"request_id": body["request_id"], "accepted": False}
    unknown = httpx.post(gw.url + "/v1/feedback", json={"request_id": "nope", "reward": 1}, headers=auth())
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "unknown_request"
    bad = httpx.post(gw.url + "/v1/feedback", json={"request_id": body["request_id"], "quality": 2}, headers=auth())
    assert bad.status_code == 400


def test_metrics_health_ready(gw) -> None:
    httpx.post(gw.url + "/v1/chat/completions", json={"model": "tierswitch/auto", "messages": user("hard metrics")},
               headers=auth())  # escalates base -> full
    assert httpx.get(gw.url + "/healthz").json()["status"] == "ok"
    assert httpx.get(gw.url + "/readyz").json()["status"] == "ready"
    text = httpx.get(gw.url + "/metrics").text
    assert 'tierswitch_gateway_requests_total{cached="false",endpoint="chat"' in text
    assert "tierswitch_gateway_request_seconds_bucket" in text and "tierswitch_gateway_config_reloads_total 1.0" in text
    assert 'tierswitch_escalations_by_tier_total{from_tier="base",router="auto",to_tier="full"}' in text


CHAT = "/v1/chat/completions"
GOOD = {"model": "tierswitch/auto", "messages": user("hi")}


@pytest.mark.parametrize(("method", "path", "headers", "body", "status", "code"), [
    ("POST", CHAT, auth(), b"{not json", 400, "invalid_json"),
    ("POST", CHAT, auth(), b"[1, 2]", 400, "invalid_request"),
    ("POST", CHAT, auth(), json.dumps({"model": "base"}).encode(), 400, "invalid_messages"),
    ("POST", CHAT, auth(), json.dumps({"messages": user("x")}).encode(), 400, "missing_model"),
    ("POST", CHAT, auth(), json.dumps({"model": "gpt-9", "messages": user("x")}).encode(), 404, "model_not_found"),
    ("POST", CHAT, {}, json.dumps(GOOD).encode(), 401, "missing_api_key"),
    ("POST", CHAT, {"authorization": "Bearer wrong"}, json.dumps(GOOD).encode(), 401, "invalid_api_key"),
    ("POST", CHAT, auth(), json.dumps({**GOOD, "messages": user("x" * 30000)}).encode(), 413, "request_too_large"),
    ("POST", CHAT, auth(), json.dumps({"model": "broken", "messages": user("x")}).encode(), 502, "upstream_failed"),
    ("POST", CHAT, auth(), json.dumps({"model": "slow", "messages": user("x")}).encode(), 504, "timeout"),
    ("GET", CHAT, auth(), None, 405, "method_not_allowed"),
    ("GET", "/v1/nothing", auth(), None, 404, "not_found"),
    ("POST", "/v1/route", auth(), b'{"no_input": 1}', 400, "invalid_request"),
])
def test_error_status_and_openai_error_shape(gw, method, path, headers, body, status, code) -> None:
    r = httpx.request(method, gw.url + path, content=body, headers={"content-type": "application/json", **headers})
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["code"] == code and isinstance(error["message"], str) and error["message"]
    assert isinstance(error["type"], str) and error["type"]


def test_body_limit_without_declared_length(gw) -> None:
    def chunks():
        yield b'{"model": "base", "messages": [{"role": "user", "content": "'
        for _ in range(30):
            yield b"x" * 1000
        yield b'"}]}'

    r = httpx.post(gw.url + CHAT, content=chunks(), headers=auth())  # chunked: no content-length
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"


def test_openai_client_error_classes(gw) -> None:
    bad_key = openai.OpenAI(base_url=gw.url + "/v1", api_key="nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad_key.chat.completions.create(model="base", messages=user("x"))
    ok = openai.OpenAI(base_url=gw.url + "/v1", api_key=KEYS["main"], max_retries=0)
    with pytest.raises(openai.NotFoundError):
        ok.chat.completions.create(model="nope", messages=user("x"))


def test_rate_limit_429_with_retry_after(gw) -> None:
    answers = [httpx.post(gw.url + CHAT, json={"model": "base", "messages": user(f"r{i}")}, headers=auth("ratey"))
               for i in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[2].json()["error"]["code"] == "rate_limit_exceeded" and int(answers[2].headers["retry-after"]) > 0
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key=KEYS["ratey"], max_retries=0)
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="base", messages=user("r9"))


def test_budget_429_after_spending(gw) -> None:
    statuses = [httpx.post(gw.url + CHAT, json={"model": "base", "messages": user(f"b{i}")},
                           headers=auth("budgety")).status_code for i in range(3)]
    assert statuses == [200, 200, 429]  # base costs 1 per call; the key's budget is 2
    cached = httpx.post(gw.url + CHAT, json={"model": "base", "messages": user("b0")}, headers=auth("budgety"))
    assert cached.json()["error"]["code"] == "budget_exceeded"


def _inflight(gw) -> int:
    return int(httpx.get(gw.url + "/healthz").json()["inflight"])


def test_client_disconnect_cancels_the_upstream_stream(gw) -> None:
    with httpx.stream("POST", gw.url + CHAT, json={"model": "slow", "messages": user("long"), "stream": True},
                      headers=auth(), timeout=10) as r:
        assert r.status_code == 200
        lines = r.iter_lines()
        assert next(line for line in lines if line.startswith("data: "))  # the first token arrived
    marker = Path(gw.tmp) / "stream-closed"
    deadline = time.monotonic() + 5
    while not marker.exists():  # the tier's generator writes it when the gateway closes it
        assert time.monotonic() < deadline, "the upstream stream was not closed after the client left"
        time.sleep(0.02)
    assert int(marker.read_text()) < 200
    while _inflight(gw) > 1:  # only the health check itself
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_client_disconnect_non_streaming(gw) -> None:
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(gw.url + CHAT, json={"model": "slow", "messages": user("bye")}, headers=auth(), timeout=0.3)
    deadline = time.monotonic() + 0.6  # well before the slow tier (2 s) or the time limit (1 s) would end it
    while _inflight(gw) > 1:
        assert time.monotonic() < deadline, "the gateway kept the request after its client left"
        time.sleep(0.02)
    assert '"status":499' in gw.output()
    marker = Path(gw.tmp) / "slow-cancelled"
    while "bye" not in (marker.read_text() if marker.exists() else ""):  # the tier call itself was cancelled
        assert time.monotonic() < deadline + 1, "the upstream call was not cancelled"
        time.sleep(0.02)
