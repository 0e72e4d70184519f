"""Redis failures are misses, never failed requests: a private redis-server killed, frozen, read-only, out of memory.

Each test owns a ``redis-server`` on a free loopback port (tests/redis_server.py) and stops it by pid. Time in the
breaker is a manual clock, so "the back-off window passed" is a step of the test, not a sleep.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from tests.contracts.cache_contract import prediction
from tests.redis_server import RedisServer, free_port

from tierswitch.cache.redis import RedisCache
from tierswitch.policies import Fixed
from tierswitch.router import Router
from tierswitch.tiers import CallableTier


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with RedisServer() as srv:
        yield srv


def make_cache(url: str, clock: ManualClock, **kwargs: object) -> RedisCache:
    return RedisCache(url, namespace="faults", clock=clock, failure_threshold=3, backoff_s=0.5, backoff_max_s=4.0,
                      **kwargs)  # type: ignore[arg-type]


def test_killed_redis_is_a_miss_then_the_breaker_skips_then_it_resumes(server: RedisServer) -> None:
    clock = ManualClock()
    cache = make_cache(server.url, clock)
    assert cache.set("d", prediction("before"))
    server.kill()
    for _ in range(3):
        assert cache.get("full", "1", "d") is None  # connection refused: a miss, counted
    assert cache.health() == {"open": True, "failures": 3, "trips": 1, "skipped": 0}
    for _ in range(100):
        assert cache.get("full", "1", "d") is None
        assert cache.set("d", prediction("during")) is False
    assert cache.breaker.skipped == 200 and cache.stats.errors == 203
    server.start()
    assert cache.get("full", "1", "d") is None  # still inside the back-off window: Redis is not asked
    assert cache.breaker.skipped == 201
    clock.advance(0.5)
    assert cache.set("d", prediction("after")) is True  # the probe succeeds and closes the breaker
    assert cache.get("full", "1", "d").output == "after"  # type: ignore[union-attr]
    assert cache.health()["open"] is False and cache.breaker.window == 0.5
    cache.close()


def test_frozen_redis_times_out_once_and_trips_the_breaker_at_once(server: RedisServer) -> None:
    clock = ManualClock()
    cache = make_cache(server.url, clock, socket_timeout_s=0.05, connect_timeout_s=0.05)
    cache.set("d", prediction("kept"))
    assert server.pid is not None
    os.kill(server.pid, signal.SIGSTOP)  # alive but silent: every call runs into its socket timeout
    try:
        assert cache.get("full", "1", "d") is None  # one socket timeout, and the breaker opens at once
        assert cache.breaker.is_open and cache.stats.errors == 1 and cache.breaker.trips == 1
        for _ in range(3):
            assert cache.get("full", "1", "d") is None
        assert cache.breaker.skipped == 3 and cache.stats.errors == 4
    finally:
        os.kill(server.pid, signal.SIGCONT)
    clock.advance(0.5)
    assert cache.get("full", "1", "d").output == "kept"  # type: ignore[union-attr]
    cache.close()


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 5.0) -> None:
    """Poll a real condition with a deadline (the peer counts accepts on its own thread)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.001)


class DroppingPeer:
    """A real TCP listener that accepts every connection and closes it at once, counting the attempts."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(5)


def test_an_open_breaker_makes_no_connection_attempts_and_backs_off_exponentially() -> None:
    peer, clock = DroppingPeer(), ManualClock()
    cache = make_cache(f"redis://127.0.0.1:{peer.port}/0", clock)
    try:
        for i in range(3):
            assert cache.get("full", "1", "d") is None
            wait_for(lambda i=i: peer.accepted == i + 1, "one dial per failing call")
        for _ in range(500):
            cache.get("full", "1", "d")
        assert peer.accepted == 3, "no connection while the breaker is open"
        clock.advance(0.5)
        cache.get("full", "1", "d")  # one probe, which fails: the window doubles to 1 s
        wait_for(lambda: peer.accepted == 4, "the probe")
        clock.advance(0.6)
        cache.get("full", "1", "d")
        clock.advance(0.5)
        cache.get("full", "1", "d")
        wait_for(lambda: peer.accepted == 5, "the second probe")
        assert cache.breaker.trips == 3 and cache.breaker.window == 4.0
    finally:
        cache.close()
        peer.close()


def test_a_restarted_server_is_redialled_without_a_failed_lookup(server: RedisServer) -> None:
    cache = make_cache(server.url, ManualClock())
    cache.set("d", prediction("before"))
    assert cache.get("full", "1", "d") is not None  # this thread's read connection is now open
    server.kill()
    server.start()  # nothing in between: the open connection is stale, the server is new and empty
    assert cache.get("full", "1", "d") is None
    assert cache.stats.errors == 0 and cache.breaker.failures == 0
    cache.close()


def test_each_thread_reads_on_its_own_connection_and_close_closes_them(server: RedisServer) -> None:
    cache = make_cache(server.url, ManualClock())
    cache.set("d", prediction("x"))
    admin = server.client()
    before = len(admin.client_list())
    read_done, release = threading.Barrier(5), threading.Event()

    def read() -> None:
        assert cache.get("full", "1", "d") is not None
        read_done.wait()
        release.wait(10)  # stay alive: a finished thread's connection is closed with its thread-local state

    threads = [threading.Thread(target=read) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        read_done.wait(10)
        assert len(admin.client_list()) == before + 4
        cache.close()  # closes the live threads' connections too
        wait_for(lambda: len(admin.client_list()) == 1, "the server to see every cache connection closed")
    finally:
        release.set()
        for t in threads:
            t.join()
    admin.close()


def test_a_finished_thread_leaves_no_connection_behind(server: RedisServer) -> None:
    cache = make_cache(server.url, ManualClock())
    admin = server.client()
    before = len(admin.client_list())
    for _ in range(5):
        t = threading.Thread(target=cache.get, args=("full", "1", "d"))
        t.start()
        t.join()
    wait_for(lambda: len(admin.client_list()) == before, "the finished threads' connections to close")
    cache.close()
    admin.close()


def test_readonly_replica_refuses_writes_as_misses_without_tripping(server: RedisServer) -> None:
    cache = make_cache(server.url, ManualClock())
    cache.set("d", prediction("written before"))
    admin = server.client()
    admin.replicaof("127.0.0.1", str(free_port()))  # a master that is not there: read-only, data kept
    assert cache.set("e", prediction("refused")) is False
    assert cache.set_many([("f", prediction(1)), ("g", prediction(2))]) == 0
    assert cache.stats.errors == 2 and cache.breaker.failures == 0
    assert cache.get("full", "1", "d").output == "written before"  # type: ignore[union-attr]
    admin.replicaof("NO", "ONE")
    assert cache.set("e", prediction("accepted"))
    admin.close()
    cache.close()


def test_out_of_memory_refuses_writes_as_misses(server: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    cache = make_cache(server.url, ManualClock())
    cache.set("d", prediction("stored"))
    admin = server.client()
    admin.config_set("maxmemory-policy", "noeviction")
    admin.config_set("maxmemory", "1")
    with caplog.at_level(logging.WARNING, logger="tierswitch.cache"):
        assert cache.set("e", prediction("no room")) is False
    assert "OutOfMemoryError" in caplog.text and cache.stats.errors == 1
    assert cache.get("full", "1", "d").output == "stored"  # type: ignore[union-attr]
    admin.config_set("maxmemory", "0")
    assert cache.set("e", prediction("room again"))
    admin.close()
    cache.close()


def test_router_survives_redis_dying_mid_stream_and_hits_return_after_restart(
    server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    n, kill_at, restart_at = 2000, 700, 1400
    clock = ManualClock()
    cache = make_cache(server.url, clock)
    state = {"i": 0, "killed": False, "calls": 0}

    def full(x: str) -> str:
        state["calls"] += 1
        if state["i"] >= kill_at and not state["killed"]:
            server.kill()  # dies while a request is in flight: after its lookup, before its write
            state["killed"] = True
        return f"answer:{x}"

    router = Router([CallableTier("base", str.upper), CallableTier("full", full, cost=10.0)], Fixed("full"),
                    cache=cache)
    # every 10th input is new; the rest cycle over 50 questions, so a working cache has plenty to hit
    inputs = [f"new-{i}" if i % 10 == 0 else f"q-{i % 50}" for i in range(n)]
    results = []
    with caplog.at_level(logging.WARNING, logger="tierswitch.cache"):
        for i, x in enumerate(inputs):
            state["i"] = i
            if i == restart_at:
                server.start()
                clock.advance(10.0)  # past the longest back-off window
            results.append(router(x))
    assert all(r.output == f"answer:{x}" and r.tier == "full" for r, x in zip(results, inputs))
    assert state["killed"]
    down = results[kill_at:restart_at]
    assert not any(r.cached for r in down[1:]) and cache.breaker.trips >= 1
    assert cache.breaker.skipped >= len(down) - 5, "a dead Redis must not be dialled on every request"
    assert len([r for r in caplog.records if r.name == "tierswitch.cache"]) <= 2, "warnings are rate-limited"
    # after the restart Redis is empty: each question misses once, then hits, without touching the router
    seen: set[str] = set()
    expected_hits = 0
    for x in inputs[restart_at:]:
        expected_hits += x in seen
        seen.add(x)
    assert sum(r.cached for r in results[restart_at:]) == expected_hits > 400
    assert state["calls"] == n - sum(r.cached for r in results)
    cache.close()
