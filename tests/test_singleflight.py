"""Single flight: a stampede of identical requests costs one computation, in threads, tasks, processes, routers."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis
from tests.contracts.cache_contract import prediction

from tierswitch.cache import Outcome, RedisSingleFlight, SingleFlight
from tierswitch.cache.memory import MemoryCache
from tierswitch.cache.redis import RedisCache
from tierswitch.errors import ConfigError
from tierswitch.policies import Fixed
from tierswitch.router import Router
from tierswitch.tiers import CallableTier
from tierswitch.types import Prediction

N = 64


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    """Poll a real condition with a deadline (the waiting side of a gate, never a fixed sleep)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.0005)


async def await_until(condition: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0)


def run_threads(n: int, fn: Callable[[int], object]) -> list[object]:
    start = threading.Barrier(n)

    def go(i: int) -> object:
        start.wait()
        return fn(i)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(go, range(n)))


# -- in process ---------------------------------------------------------------------------------------------------
def test_threads_share_one_computation() -> None:
    sf, calls = SingleFlight(), Counter()

    def compute() -> str:
        calls["k"] += 1
        wait_until(lambda: sf.shared >= N - 1, "every other thread to join the flight")
        return "value"

    outcomes = run_threads(N, lambda i: sf.do_outcome("k", compute))
    assert calls["k"] == 1
    assert {o.value for o in outcomes} == {"value"}  # type: ignore[attr-defined]
    assert Counter(o.role for o in outcomes) == {"leader": 1, "waiter": N - 1}  # type: ignore[attr-defined]
    assert sf.in_flight() == 0


def test_asyncio_tasks_share_one_computation() -> None:
    sf, calls = SingleFlight(), Counter()

    async def compute() -> str:
        calls["k"] += 1
        await await_until(lambda: sf.shared >= N - 1, "every other task to join the flight")
        return "value"

    async def main() -> list[str]:
        return await asyncio.gather(*(sf.ado("k", compute) for _ in range(N)))

    assert asyncio.run(main()) == ["value"] * N
    assert calls["k"] == 1


def test_a_thread_and_a_task_share_a_flight() -> None:
    sf, release = SingleFlight(), threading.Event()
    calls = Counter()

    def compute() -> str:
        calls["sync"] += 1
        release.wait(10)
        return "from a thread"

    async def acompute() -> str:
        calls["async"] += 1
        return "from a task"

    with ThreadPoolExecutor(1) as pool:
        leader = pool.submit(sf.do, "k", compute)
        wait_until(lambda: sf.in_flight() == 1, "the thread to lead")

        async def main() -> str:
            waiter = asyncio.ensure_future(sf.ado("k", acompute))
            await await_until(lambda: sf.shared == 1, "the task to join")
            release.set()
            return await waiter

        assert asyncio.run(main()) == "from a thread"
        assert leader.result(10) == "from a thread"
    assert calls == {"sync": 1}


def test_distinct_keys_do_not_wait_for_each_other() -> None:
    sf = SingleFlight()
    results = run_threads(8, lambda i: sf.do(i % 4, lambda i=i: i % 4))
    assert results == [i % 4 for i in range(8)]


def test_waiters_get_the_leaders_error_and_the_next_call_computes_again() -> None:
    sf, calls = SingleFlight(), Counter()

    def failing() -> str:
        calls["k"] += 1
        wait_until(lambda: sf.shared >= 7, "the waiters")
        raise RuntimeError("tier down")

    def attempt(i: int) -> str:
        try:
            return sf.do("k", failing)
        except RuntimeError as exc:
            return str(exc)

    assert run_threads(8, attempt) == ["tier down"] * 8
    assert calls["k"] == 1
    assert sf.do("k", lambda: "recovered") == "recovered"  # failures are not remembered


def test_a_cancelled_async_leader_hands_over_to_a_waiter() -> None:
    sf, calls = SingleFlight(), Counter()

    async def main() -> tuple[str, str]:
        gate = asyncio.Event()

        async def slow() -> str:
            calls["slow"] += 1
            await gate.wait()
            return "never"

        async def fast() -> str:
            calls["fast"] += 1
            done["k"] = "from the new leader"
            return done["k"]

        done: dict[str, str] = {}  # stands for the cache the new leader fills
        leader = asyncio.ensure_future(sf.ado("k", slow))
        await await_until(lambda: calls["slow"] == 1, "the leader to start")
        waiters = [asyncio.ensure_future(sf.ado("k", fast, lambda: done.get("k"))) for _ in range(2)]
        await await_until(lambda: sf.shared == 2, "the waiters to join")
        leader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await leader
        a, b = await asyncio.gather(*waiters)
        return a, b

    assert asyncio.run(main()) == ("from the new leader", "from the new leader")
    assert calls == {"slow": 1, "fast": 1}


def test_an_interrupted_sync_leader_hands_over_to_a_waiter() -> None:
    class Interrupt(BaseException):
        pass

    sf, calls = SingleFlight(), Counter()

    def interrupted() -> str:
        calls["first"] += 1
        wait_until(lambda: sf.shared == 1, "the waiter")
        raise Interrupt

    def lead() -> str:
        try:
            return sf.do("k", interrupted)
        except Interrupt:
            return "interrupted"

    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(lead)
        wait_until(lambda: calls["first"] == 1, "the leader")
        second = pool.submit(sf.do, "k", lambda: calls.update(["second"]) or "recomputed")
        assert first.result(10) == "interrupted" and second.result(10) == "recomputed"
    assert calls == {"first": 1, "second": 1}


def test_cancelling_a_waiter_leaves_the_flight_running() -> None:
    sf = SingleFlight()

    async def main() -> str:
        gate = asyncio.Event()

        async def compute() -> str:
            await gate.wait()
            return "done"

        leader = asyncio.ensure_future(sf.ado("k", compute))
        await asyncio.sleep(0)
        doomed = asyncio.ensure_future(sf.ado("k", compute))
        patient = asyncio.ensure_future(sf.ado("k", compute))
        await await_until(lambda: sf.shared == 2, "both waiters")
        doomed.cancel()
        gate.set()
        assert await patient == "done"
        return await leader

    assert asyncio.run(main()) == "done"


def test_leader_rechecks_the_cache_before_computing() -> None:
    sf, cache, calls = SingleFlight(), MemoryCache(), Counter()
    recheck = lambda: cache.get("full", "1", "d")  # noqa: E731

    def compute() -> Prediction:
        calls["full"] += 1
        p = prediction("answer")
        cache.set("d", p)
        return p

    first = sf.do_outcome("d", compute, recheck)
    # a caller that missed the cache before the first flight stored its answer arrives after it finished
    late = sf.do_outcome("d", compute, recheck)
    assert (first.role, late.role, late.value.output, calls["full"]) == ("leader", "recheck", "answer", 1)
    assert sf.rechecked == 1


def test_a_waiter_that_times_out_computes_itself() -> None:
    sf, release = SingleFlight(timeout_s=0.05), threading.Event()
    with ThreadPoolExecutor(1) as pool:
        leader = pool.submit(sf.do, "k", lambda: release.wait(10) and "slow")
        wait_until(lambda: sf.in_flight() == 1, "the leader")
        mine = sf.do_outcome("k", lambda: "mine")
        release.set()
        assert leader.result(10) == "slow"
    assert (mine.value, mine.role, sf.timeouts) == ("mine", "leader", 1)
    with pytest.raises(ConfigError, match="timeout_s"):
        SingleFlight(timeout_s=0)


# -- through the router -------------------------------------------------------------------------------------------
def gated_router(sf: SingleFlight, cache: object) -> tuple[Router, Counter[str]]:
    calls: Counter[str] = Counter()

    def full(x: str) -> str:
        calls["full"] += 1
        wait_until(lambda: sf.shared >= N - 1, "every other request to join the flight")
        return f"full:{x}"

    tiers = [CallableTier("base", lambda x: f"base:{x}"), CallableTier("full", full, cost=10.0)]
    return Router(tiers, Fixed("full"), cache=cache, single_flight=sf), calls


def test_router_threads_stampede_calls_the_full_tier_once() -> None:
    sf = SingleFlight()
    router, calls = gated_router(sf, MemoryCache())
    results = run_threads(N, lambda i: router("the same question"))
    assert calls["full"] == 1
    assert {r.output for r in results} == {"full:the same question"}  # type: ignore[attr-defined]


def test_router_asyncio_stampede_calls_the_full_tier_once(redis_url: str, redis_prefix: str) -> None:
    sf = SingleFlight()
    cache = RedisCache(redis_url, namespace=redis_prefix)
    router, calls = gated_router(sf, cache)

    async def main() -> list[object]:
        # acall runs the sync core in the loop's executor: give it room for the whole stampede
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(N))
        return await asyncio.gather(*(router.acall("the same question") for _ in range(N)))

    results = asyncio.run(main())
    assert calls["full"] == 1
    assert {r.output for r in results} == {"full:the same question"}  # type: ignore[attr-defined]
    assert router("the same question").cached
    cache.close()


# -- across processes ---------------------------------------------------------------------------------------------
WORKER = r"""
import json, os, sys, threading, time
import redis
from tierswitch.cache.redis import RedisCache
from tierswitch.cache import RedisSingleFlight
from tierswitch.types import Prediction

url, ns, n_procs, n_threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
admin = redis.Redis.from_url(url)
cache = RedisCache(url, namespace=ns)
sf = RedisSingleFlight(cache, poll_s=0.002)
pid = str(os.getpid())

def recheck():
    found = cache.get("full", "1", "digest")
    if found is None:
        admin.sadd(f"{ns}:polled", pid)  # this process looked while the lock was held
    return found

def compute():
    admin.incr(f"{ns}:calls")
    deadline = time.monotonic() + 20
    while admin.scard(f"{ns}:polled") < n_procs:  # every process is stuck behind our lock
        assert time.monotonic() < deadline, "other processes never polled"
        time.sleep(0.001)
    p = Prediction(f"answer from {pid}", "full", "1", 10.0, 0.0, None, 0.9)
    cache.set("digest", p)
    return p

admin.incr(f"{ns}:ready")
admin.blpop([f"{ns}:go"], timeout=30)
roles, outputs = [], []
def one():
    o = sf.do_outcome("digest", compute, recheck)
    roles.append(o.role)
    outputs.append(o.value.output)
threads = [threading.Thread(target=one) for _ in range(n_threads)]
for t in threads: t.start()
for t in threads: t.join()
print(json.dumps({"roles": roles, "outputs": outputs, "lock_waits": sf.lock_waits}))
"""


def test_processes_stampede_calls_the_full_tier_once(redis_url: str, redis_prefix: str) -> None:
    n_procs, n_threads = 4, N // 4
    admin = redis.Redis.from_url(redis_url)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    procs = [
        subprocess.Popen([sys.executable, "-c", WORKER, redis_url, redis_prefix, str(n_procs), str(n_threads)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for _ in range(n_procs)
    ]
    try:
        wait_until(lambda: int(admin.get(f"{redis_prefix}:ready") or 0) == n_procs, "workers to start", 60)
        admin.rpush(f"{redis_prefix}:go", *["go"] * n_procs)
        reports = []
        for p in procs:
            out, err = p.communicate(timeout=60)
            assert p.returncode == 0, err
            reports.append(json.loads(out))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        admin.close()
    roles = Counter(r for rep in reports for r in rep["roles"])
    outputs = {o for rep in reports for o in rep["outputs"]}
    assert int(redis.Redis.from_url(redis_url).get(f"{redis_prefix}:calls")) == 1
    assert roles["leader"] == 1 and sum(roles.values()) == N
    assert len(outputs) == 1
    assert sum(rep["lock_waits"] for rep in reports) == n_procs - 1


@pytest.fixture
def rcache(redis_url: str, redis_prefix: str) -> Iterator[RedisCache]:
    cache = RedisCache(redis_url, namespace=redis_prefix, socket_timeout_s=5, connect_timeout_s=5)
    yield cache
    cache.close()


def test_a_waiting_process_takes_over_when_the_holder_fails(rcache: RedisCache) -> None:
    holder, other = RedisSingleFlight(rcache, poll_s=0.001), RedisSingleFlight(rcache, poll_s=0.001)
    recheck = lambda: rcache.get("full", "1", "d")  # noqa: E731

    def failing() -> Prediction:
        wait_until(lambda: other.lock_waits == 1, "the other process to wait on the lock")
        raise RuntimeError("full tier crashed")

    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(holder.do_outcome, "d", failing, recheck)
        wait_until(lambda: rcache.client.exists(f"{rcache.namespace}:lock:d") == 1, "the lock")
        mine = other.do_outcome("d", lambda: prediction("computed after takeover"), recheck)
        with pytest.raises(RuntimeError, match="crashed"):
            first.result(10)
    assert (mine.role, mine.value.output) == ("leader", "computed after takeover")
    assert rcache.client.exists(f"{rcache.namespace}:lock:d") == 0, "the lock is released after use"


def test_a_waiter_computes_itself_after_the_wait_timeout(rcache: RedisCache) -> None:
    now = [0.0]

    def fake_sleep(s: float) -> None:  # time moves only when the waiter sleeps
        now[0] += s

    sf = RedisSingleFlight(rcache, wait_timeout_s=1.0, poll_s=0.25, clock=lambda: now[0], sleep=fake_sleep)
    rcache.client.set(f"{rcache.namespace}:lock:d", b"a crashed holder", px=60_000)
    out = sf.do_outcome("d", lambda: "computed", lambda: None)
    assert (out.value, out.role, sf.lock_timeouts, now[0]) == ("computed", "leader", 1, 1.0)


def test_without_redis_the_flight_simply_computes(redis_prefix: str) -> None:
    from tests.redis_server import free_port

    cache = RedisCache(f"redis://127.0.0.1:{free_port()}/0", namespace=redis_prefix)
    sf = RedisSingleFlight(cache)
    assert sf.do_outcome("k", lambda: "computed", lambda: cache.get("full", "1", "k")).value == "computed"
    assert sf.do("k", lambda: "again") == "again"


def test_async_flights_of_two_processes_compute_once(rcache: RedisCache) -> None:
    a, b = RedisSingleFlight(rcache, poll_s=0.001), RedisSingleFlight(rcache, poll_s=0.001)
    calls = Counter()

    async def main() -> list[str]:
        async def compute() -> Prediction:
            calls["full"] += 1
            await await_until(lambda: a.lock_waits + b.lock_waits == 1, "the other flight to wait on the lock")
            p = prediction("shared")
            rcache.set("d", p)
            return p

        recheck = lambda: rcache.get("full", "1", "d")  # noqa: E731
        tasks = [sf.ado("d", compute, recheck) for sf in (a, b) for _ in range(16)]
        return [p.output for p in await asyncio.gather(*tasks)]

    assert asyncio.run(main()) == ["shared"] * 32
    assert calls["full"] == 1


def test_a_router_that_waits_on_another_process_counts_and_records_its_request_once(rcache: RedisCache) -> None:
    """Router b waits on router a's Redis lock, then finds a's answer with its own recheck: that is one request,
    served from the cache, with one decision record (not also re-served as an in-flight share)."""
    from tierswitch.digest import digest_of

    a_flight, b_flight = RedisSingleFlight(rcache, poll_s=0.001), RedisSingleFlight(rcache, poll_s=0.001)

    def full(x: str) -> str:
        wait_until(lambda: b_flight.lock_waits == 1, "the other process to wait on the lock")
        return f"full:{x}"

    records: list[object] = []
    a = Router([CallableTier("full", full, cost=10.0)], Fixed("full"), cache=rcache, single_flight=a_flight)
    b = Router([CallableTier("full", full, cost=10.0)], Fixed("full"), cache=rcache, single_flight=b_flight,
               hooks=[records.append])
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(a, "q")
        lock = f"{rcache.namespace}:lock:{digest_of('q')}:text"
        wait_until(lambda: rcache.client.exists(lock) == 1, "router a to hold the lock")
        out = b("q")
        assert first.result(10).output == "full:q"
    assert (out.output, out.cached, out.cost) == ("full:q", True, 0.0)
    assert b.stats.snapshot()["requests"] == 1 and b.stats.snapshot()["cache_hits"] == 1
    assert [r.request_id for r in records] == [out.request_id]  # type: ignore[attr-defined]


# -- one protocol, two shells ---------------------------------------------------------------------------------------
def test_the_async_shell_skips_the_recheck_when_no_flight_finished_since_the_epoch() -> None:
    sf, rechecks = SingleFlight(), Counter()

    def recheck() -> str | None:
        rechecks["n"] += 1
        return None

    async def compute() -> str:
        return "computed"

    async def main() -> tuple[str, str]:
        skipped = await sf.ado_outcome("k", compute, recheck, sf.completed)  # nothing finished since: no recheck
        stale = sf.completed - 1  # a flight finished after this caller's own miss: recheck first
        checked = await sf.ado_outcome("k", compute, recheck, stale)
        return skipped.role, checked.role

    assert asyncio.run(main()) == ("leader", "leader") and rechecks["n"] == 1
    assert sf.do_outcome("k", lambda: "sync", recheck, sf.completed).role == "leader" and rechecks["n"] == 1


def test_an_async_lock_holder_that_fails_hands_over_and_releases_its_lock(rcache: RedisCache) -> None:
    holder, other = RedisSingleFlight(rcache, poll_s=0.001), RedisSingleFlight(rcache, poll_s=0.001)
    lock = f"{rcache.namespace}:lock:d"

    async def main() -> tuple[str, str]:
        async def failing() -> Prediction:
            await await_until(lambda: other.lock_waits == 1, "the other flight to wait on the lock")
            raise RuntimeError("full tier crashed")

        async def recompute() -> Prediction:
            return prediction("computed after takeover")

        first = asyncio.ensure_future(holder.ado_outcome("d", failing, lambda: rcache.aget("full", "1", "d")))
        await await_until(lambda: rcache.client.exists(lock) == 1, "the async holder to take the lock")
        mine = await other.ado_outcome("d", recompute, lambda: rcache.aget("full", "1", "d"))
        with pytest.raises(RuntimeError, match="crashed"):
            await first
        await rcache.aclose()
        return mine.role, mine.value.output

    assert asyncio.run(main()) == ("leader", "computed after takeover")
    assert rcache.client.exists(lock) == 0, "the lock is released after use"


@pytest.mark.parametrize("when", ["taking the lock", "computing"])
def test_a_cancelled_async_lock_holder_releases_its_lock(rcache: RedisCache, when: str) -> None:
    """Cancelled while its SET NX is on the wire (redis.asyncio on 3.11 can swallow that cancel: the cache
    re-delivers it) or while computing: either way the lock is given back and the flight is abandoned."""
    sf = RedisSingleFlight(rcache)
    lock = f"{rcache.namespace}:lock:k"

    async def main() -> None:
        gate, started = asyncio.Event(), asyncio.Event()

        async def hang() -> str:
            started.set()
            await gate.wait()
            return "never"

        await rcache.aget("full", "1", "warm")  # the loop's client is connected: the SET is the only await
        task = asyncio.ensure_future(sf.ado("k", hang))
        if when == "computing":
            await started.wait()
        else:
            await asyncio.sleep(0)  # the task has sent SET NX and waits for the reply
        task.cancel()
        await asyncio.wait({task}, timeout=10)  # a lost cancel would leave it waiting on the gate forever
        gate.set()
        assert task.cancelled(), "the cancel was swallowed: the holder went on to compute"
        await rcache.aclose()

    asyncio.run(main())
    assert rcache.client.exists(lock) == 0 and sf.in_flight() == 0


def test_an_async_waiter_computes_itself_after_the_wait_timeout(rcache: RedisCache) -> None:
    now = [0.0]

    async def fake_sleep(s: float) -> None:  # time moves only when the waiter sleeps
        now[0] += s

    sf = RedisSingleFlight(rcache, wait_timeout_s=1.0, poll_s=0.25, clock=lambda: now[0], asleep=fake_sleep)
    rcache.client.set(f"{rcache.namespace}:lock:d", b"a crashed holder", px=60_000)

    async def main() -> Any:
        async def compute() -> str:
            return "computed"

        try:
            return await sf.ado_outcome("d", compute, lambda: None)
        finally:
            await rcache.aclose()

    out = asyncio.run(main())
    assert (out.value, out.role, sf.lock_timeouts, now[0]) == ("computed", "leader", 1, 1.0)


def test_the_async_shell_takes_the_lock_with_redis_asyncio() -> None:
    from tests.redis_server import RedisServer

    with RedisServer() as server:
        cache = RedisCache(server.url, namespace="flight")
        sf = RedisSingleFlight(cache)
        admin = server.client()

        async def main() -> Outcome:
            async def compute() -> str:
                return "v"

            try:
                return await sf.ado_outcome("k", compute)
            finally:
                await cache.aclose()

        assert asyncio.run(main()) == Outcome("v", "leader")
        stats = admin.info("commandstats")
        assert stats["cmdstat_set"]["calls"] == 1 and stats["cmdstat_eval"]["calls"] == 1
        assert len(admin.client_list()) == 1, "only the admin is still connected: the async client was closed"
        assert "conn" not in cache._local.__dict__, "the sync client was never used"
        admin.close()
        cache.close()


def test_the_cache_package_has_no_import_cycle() -> None:
    import ast
    import pathlib

    import tierswitch.cache as pkg

    root = pathlib.Path(pkg.__file__).parent
    graph: dict[str, set[str]] = {}
    for path in root.glob("*.py"):
        name = f"tierswitch.cache.{path.stem}" if path.stem != "__init__" else "tierswitch.cache"
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):  # function-level and TYPE_CHECKING imports included
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tierswitch.cache."):
                deps.add(node.module)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name.startswith("tierswitch.cache."))
        graph[name] = deps

    def reaches(start: str, target: str, seen: set[str]) -> bool:
        for dep in graph.get(start, ()):
            if dep == target or (dep not in seen and reaches(dep, target, seen | {dep})):
                return True
        return False

    cyclic = [m for m in graph if m != "tierswitch.cache" and reaches(m, m, set())]
    assert cyclic == []
    assert "tierswitch.cache.redis_flight" not in graph["tierswitch.cache.singleflight"]
