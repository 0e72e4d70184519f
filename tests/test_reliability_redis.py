"""Redis killed (SIGKILL) and restarted during a 10,000-request load at 64-way concurrency: no request fails, the
outage shows as cache errors, and the hit rate recovers once the server is back.

The kill happens when request 3,000 starts and the restart when request 4,000 starts, with requests in flight
both times. Two gates (events, not sleeps) keep the phases in order however the threads are scheduled: requests from
3,100 on start only once the server is dead (so the outage sees real traffic), and requests from 5,000 on only once
it is back (so the window where recovery is measured really comes after the restart). The model takes 2 ms
per call (a fast real model), which is what makes misses cost something."""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from redis_server import RedisServer
from tierswitch import CallableTier, Fixed, Router
from tierswitch.cache.redis import RedisCache

N = 10_000
KILL_AT, RESTART_AT, GATE_AT = 3_000, 4_000, 5_000
MODEL_S = 0.002


def test_redis_killed_and_restarted_under_load_no_request_fails():
    server = RedisServer().start()
    cache = RedisCache(server.url, namespace="killtest", socket_timeout_s=0.2,
                       connect_timeout_s=0.2, failure_threshold=3, backoff_s=0.01, backoff_max_s=0.05)

    def model(x: str):
        time.sleep(MODEL_S)  # the model's own latency, not synchronisation
        return f"answer:{x}", np.array([0.3, 0.7])

    router = Router([CallableTier("full", model)], Fixed("full"), cache=cache)
    rng = random.Random(3)
    xs = [f"question {rng.randrange(400)}" for _ in range(N)]
    seq = iter(range(N))
    seq_lock = threading.Lock()
    reached = {KILL_AT: threading.Event(), RESTART_AT: threading.Event()}
    killed, restarted = threading.Event(), threading.Event()
    outcome: list[tuple[int, bool] | BaseException] = []

    def one(x: str):
        with seq_lock:
            i = next(seq)
        if i in reached:
            reached[i].set()
        if i >= KILL_AT + 100:
            assert killed.wait(120)
        if i >= GATE_AT:
            assert restarted.wait(120)
        try:
            routed = router(x)
        except BaseException as exc:  # counted: the assertion is that there are none
            outcome.append(exc)
            raise
        assert routed.output == f"answer:{x}"
        return i, routed.cached

    try:
        with ThreadPoolExecutor(64) as pool:
            futures = [pool.submit(one, x) for x in xs]
            assert reached[KILL_AT].wait(120)
            server.kill()  # SIGKILL, reaped
            killed.set()
            errors_at_kill = cache.stats.errors
            assert reached[RESTART_AT].wait(120)
            server.start()  # same port, empty, as a replacement Redis would come back
            restarted.set()
            results = [f.result() for f in futures]
    finally:
        server.stop()
        cache.close()
    assert outcome == [] and len(results) == N  # 0 failed requests
    assert cache.stats.errors > errors_at_kill  # the outage was seen (and turned into misses)
    assert cache.breaker.trips >= 1
    hits = sorted(results)
    before = np.mean([c for i, c in hits if 1_000 <= i < KILL_AT])
    after = np.mean([c for i, c in hits if i >= N - 2_000])
    assert before > 0.5 and after > 0.5, (before, after)
    print(f"\nhit rate before kill {before:.2f}, in the last 2000 requests {after:.2f}; cache errors "
          f"{cache.stats.errors}, breaker trips {cache.breaker.trips}, calls skipped {cache.breaker.skipped}")

