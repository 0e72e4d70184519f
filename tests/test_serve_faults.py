"""Gateway faults with real processes: an upstream killed mid-stream, a reload with a broken config, SIGTERM under
load (in-flight requests finish, new ones get 503)."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest
import yaml
from tests.gateway_proc import gateway, upstream


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def _wait(condition, timeout_s: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.mark.slow
def test_upstream_killed_mid_stream_gives_a_clean_error(tmp_path: Path) -> None:
    with upstream({"UP_CHUNK_DELAY_S": "0.05", "UP_WORDS": "200"}) as up:
        config = {"tiers": {"up": {"kind": "python", "function": "tests.gateway_tiers:upstream",
                                   "stream": "tests.gateway_tiers:upstream_stream"}},
                  "policy": {"kind": "fixed", "tier": "up"}, "gateway": {"reload_interval_s": 0}}
        with gateway(config, tmp_path, {"GW_UPSTREAM_URL": up.url}) as gw:
            client = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0, timeout=10)
            stream = client.chat.completions.create(model="up", messages=user("go"), stream=True)
            started = time.monotonic()
            got = []
            with pytest.raises(openai.APIError) as caught:
                for chunk in stream:
                    got.append(chunk.choices[0].delta.content)
                    if len(got) == 3:
                        up.stop()  # SIGKILL the upstream mid-stream
            assert time.monotonic() - started < 5  # a clean error event, never a hung connection
            assert len(got) >= 3 and "failed" in str(caught.value)
            assert httpx.get(gw.url + "/healthz").json()["status"] == "ok"  # the gateway keeps serving


def test_reload_with_a_broken_config_keeps_the_old_one(tmp_path: Path) -> None:
    config = {"tiers": {"base": {"kind": "python", "function": "tests.gateway_tiers:base", "cost": 1}},
              "policy": {"kind": "fixed", "tier": "base"},
              "gateway": {"reload_interval_s": 0.05, "routes": {"v1": {"policy": {"kind": "fixed", "tier": "base"}}}}}
    with gateway(config, tmp_path) as gw:
        path = tmp_path / "router.yaml"
        health = lambda: httpx.get(gw.url + "/healthz").json()  # noqa: E731
        stop = threading.Event()
        failures: list[int] = []

        def load() -> None:
            with httpx.Client() as c:
                while not stop.is_set():
                    r = c.post(gw.url + "/v1/chat/completions", json={"model": "base", "messages": user("x")})
                    if r.status_code != 200:
                        failures.append(r.status_code)

        thread = threading.Thread(target=load)
        thread.start()
        try:
            path.write_text("tiers: {base: {kind: python, function: 'no.such.module:fn'}}\npolicy: {kind: fixed")
            _wait(lambda: health()["config_error"] is not None, what="the broken config to be refused")
            assert "cannot parse" in health()["config_error"]
            bad = {**config, "tiers": {"base": {"kind": "python", "function": "no.such.module:fn"}}}
            path.write_text(yaml.safe_dump(bad, sort_keys=False))
            _wait(lambda: "no.such.module" in (health()["config_error"] or ""), what="the bad tier to be refused")
            models = [m["id"] for m in httpx.get(gw.url + "/v1/models").json()["data"]]
            assert models == ["tierswitch/auto", "base", "v1"]  # the old config serves
            good = {**config, "gateway": {**config["gateway"], "routes": {"v2": {"policy": {"kind": "fixed",
                                                                                        "tier": "base"}}}}}
            path.write_text(yaml.safe_dump(good, sort_keys=False))
            _wait(lambda: health()["config_error"] is None and health()["reloads"] == 2, what="the good config")
            models = [m["id"] for m in httpx.get(gw.url + "/v1/models").json()["data"]]
            assert models == ["tierswitch/auto", "base", "v2"]
        finally:
            stop.set()
            thread.join()
        assert failures == []  # no request dropped across three reload attempts


@pytest.mark.slow
def test_sigterm_drains_in_flight_and_refuses_new(tmp_path: Path) -> None:
    config = {"tiers": {"slow": {"kind": "python", "function": "tests.gateway_tiers:slow"}},
              "policy": {"kind": "fixed", "tier": "slow"},
              "gateway": {"reload_interval_s": 0, "drain_timeout_s": 10}}
    gw = gateway(config, tmp_path, {"GW_SLOW_S": "1.0"}).start()
    try:
        results: list[int] = []

        def one(i: int) -> None:
            r = httpx.post(gw.url + "/v1/chat/completions", json={"model": "slow", "messages": user(f"s{i}")},
                           timeout=10)
            results.append(r.status_code)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        _wait(lambda: httpx.get(gw.url + "/healthz").json()["inflight"] >= 5, what="4 requests in flight")
        gw.signal(signal.SIGTERM)
        _wait(lambda: httpx.get(gw.url + "/healthz").json()["status"] == "draining", what="draining")
        refused = httpx.post(gw.url + "/v1/chat/completions", json={"model": "slow", "messages": user("new")})
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "shutting_down"
        assert httpx.get(gw.url + "/readyz").status_code == 503  # a load balancer takes it out
        for t in threads:
            t.join()
        assert results == [200, 200, 200, 200]  # every in-flight request finished
        assert gw.proc is not None
        gw.proc.wait(timeout=15)  # and then the process exits on its own
    finally:
        gw.stop()


@pytest.mark.slow
def test_two_workers_each_build_their_router_and_stop_on_sigterm(tmp_path: Path) -> None:
    config = {"tiers": {"base": {"kind": "python", "function": "tests.gateway_tiers:base"}},
              "policy": {"kind": "fixed", "tier": "base"}, "gateway": {"reload_interval_s": 0}}
    with gateway(config, tmp_path, workers=2) as gw:
        pids: set[int] = set()
        for i in range(200):  # a fresh connection each time: the kernel spreads them over the workers
            r = httpx.post(gw.url + "/v1/chat/completions", json={"model": "base", "messages": user(f"w{i}")})
            assert r.status_code == 200
            pids.add(httpx.get(gw.url + "/healthz").json()["pid"])
            if len(pids) == 2:
                break
        assert len(pids) == 2 and gw.proc is not None and gw.proc.pid not in pids
        gw.signal(signal.SIGTERM)
        gw.proc.wait(timeout=20)
