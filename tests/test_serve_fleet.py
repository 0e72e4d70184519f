"""A fleet on one Redis: two gateway processes share cached answers, coalesce identical concurrent requests into
one upstream call (counted at the upstream), hold one budget, and lose no request when Redis dies and comes back."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from tests.gateway_proc import Proc, gateway, upstream
from tests.redis_server import RedisServer

from tierswitch.serve.settings import hash_key

pytestmark = pytest.mark.slow
KEYS = {"main": "sk-fleet-main", "budgety": "sk-fleet-budget"}


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Proc, Proc, Proc, RedisServer]]:
    tmp = tmp_path_factory.mktemp("fleet")
    with RedisServer() as redis_server, upstream({"UP_DELAY_S": "0.3"}) as up:
        config = {
            "tiers": {"up": {"kind": "python", "function": "tests.gateway_tiers:upstream", "cost": 1}},
            "policy": {"kind": "fixed", "tier": "up"},
            "cache": {"kind": "redis", "url": redis_server.url, "namespace": f"gwfleet{uuid.uuid4().hex[:8]}",
                      "backoff_s": 0.2, "backoff_max_s": 0.5},
            "gateway": {"auth": {"keys_env": "GW_FLEET_KEYS"}, "reload_interval_s": 0,
                        "limits": {"keys": {"budgety": {"budget": {"cost": 3, "per_s": 3600}}}}},
        }
        env = {"GW_FLEET_KEYS": ",".join(f"{n}={hash_key(k)}" for n, k in KEYS.items()), "GW_UPSTREAM_URL": up.url}
        a = gateway(config, tmp, env, name="a.yaml").start()
        b = gateway(config, tmp, env, name="b.yaml").start()
        try:
            yield a, b, up, redis_server
        finally:
            a.stop()
            b.stop()


def ask(gw: Proc, text: str, key: str = "main", timeout: float = 10) -> httpx.Response:
    return httpx.post(gw.url + "/v1/chat/completions", json={"model": "up", "messages": [{"role": "user",
                      "content": text}]}, headers={"authorization": f"Bearer {KEYS[key]}"}, timeout=timeout)


def calls(up: Proc) -> int:
    return int(httpx.get(up.url + "/calls").json()["calls"])


def test_processes_share_cached_answers(fleet) -> None:
    a, b, up, _ = fleet
    before = calls(up)
    first = ask(a, "shared question")
    second = ask(b, "shared question")
    assert first.headers["x-tierswitch-cached"] == "false" and second.headers["x-tierswitch-cached"] == "true"
    assert second.json()["choices"][0]["message"]["content"] == "echo: shared question"
    assert calls(up) == before + 1


def test_identical_concurrent_requests_make_one_upstream_call(fleet) -> None:
    a, b, up, _ = fleet
    before = calls(up)
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda i: ask(a if i % 2 else b, "coalesce me"), range(8)))
    assert [r.status_code for r in answers] == [200] * 8
    assert {r.json()["choices"][0]["message"]["content"] for r in answers} == {"echo: coalesce me"}
    assert calls(up) == before + 1  # one upstream call for 8 requests over two processes


def test_one_budget_for_the_fleet(fleet) -> None:
    a, b, _, _ = fleet
    statuses = [ask(a if i % 2 else b, f"budget {i}", key="budgety").status_code for i in range(5)]
    assert statuses == [200, 200, 200, 429, 429]  # 3 calls of cost 1 across both processes, then refused


def test_redis_killed_and_restarted_under_load_fails_no_request(fleet) -> None:
    a, b, _, redis_server = fleet
    stop = threading.Event()
    statuses: list[int] = []

    def load(gw: Proc, worker: int) -> None:
        i = 0
        while not stop.is_set():
            statuses.append(ask(gw, f"load {worker} {i % 5}").status_code)
            i += 1

    threads = [threading.Thread(target=load, args=(gw, w)) for w, gw in enumerate((a, b, a, b))]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 10
        while len(statuses) < 20:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        redis_server.kill()
        seen = len(statuses)
        while len(statuses) < seen + 20:  # requests keep being answered with Redis gone
            assert time.monotonic() < deadline + 10
            time.sleep(0.02)
        redis_server.start()
        seen = len(statuses)
        while len(statuses) < seen + 20:
            assert time.monotonic() < deadline + 20
            time.sleep(0.02)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert statuses and set(statuses) == {200}, f"{len([s for s in statuses if s != 200])} failed requests"
    assert ask(a, "after restart").status_code == 200
