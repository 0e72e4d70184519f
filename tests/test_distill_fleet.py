"""A fleet with real processes sharing one Redis: a producer router feeding the sample stream, a distill-worker that
is SIGKILLed in the middle of a batch and replaced, and a second router that hot-reloads promoted students.

Claims: every sample the producer put on the stream is acknowledged exactly once (the audit list written in the
same transaction as each XACK holds every stream id once, and nothing stays pending), the killed worker's in-flight
entries are claimed by its replacement, and the second router serves each promoted version within one second of
its promotion. Run as a script, this file plays the producer and the second router (``python FILE ROLE ...``).
"""

from __future__ import annotations

import collections
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SPEC = {"kind": "mlp", "input_dim": 64, "hidden": [64], "n_classes": 10, "classes": list(range(10))}
GROUP = "distill"


# -- the roles, run in their own processes --------------------------------------------------------------------------
def _features(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float32).reshape(64)


def _student(redis_url: str, namespace: str):
    import redis

    from tierswitch.distill import StudentSpec, WeightStore, WeightSubscriber, student_tier

    client = redis.Redis.from_url(redis_url)
    tier = student_tier(StudentSpec.from_dict(SPEC), _features, num_threads=1)
    return client, tier, WeightSubscriber(WeightStore(client, namespace), tier, poll_s=30.0)


def producer(redis_url: str, namespace: str, n: int) -> None:
    """A router over base / distilled / full that feeds every full-tier answer (and 10% shadow samples) to the
    fleet's stream, and follows the promoted students like any router of the fleet."""
    import torch
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    from tierswitch import Cascade, Router, SklearnTier
    from tierswitch.distill import DistillFeeder, RedisStreamBuffer

    torch.set_num_threads(1)
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    base = LogisticRegression(max_iter=1000, C=0.05).fit(X[:600], y[:600])
    full = LogisticRegression(max_iter=2000, C=10).fit(X[:900], y[:900])
    client, student, subscriber = _student(redis_url, namespace)
    subscriber.start()
    router = Router([SklearnTier("base", base, preprocess=np.stack, cost=1.0), student,
                     SklearnTier("full", full, preprocess=np.stack, cost=10.0)],
                    Cascade({"base": 0.9, "distilled": 0.8}))
    stream = RedisStreamBuffer(client, f"{namespace}:samples", GROUP, "producer")
    feeder = DistillFeeder(stream, _features, shadow_rate=0.1, seed=0, queue_size=100_000).attach(router)
    rng = np.random.default_rng(0)
    for i in rng.integers(900, len(X), n):
        router(np.clip(X[i] + rng.normal(0, 0.05, 64), 0, 1), modality="tabular")
    feeder.flush(120)
    feeder.stop()
    subscriber.stop()
    print(json.dumps({"produced": feeder.counters["samples"], "dropped": feeder.counters["dropped"]}), flush=True)


def server(redis_url: str, namespace: str) -> None:
    """A second router that only serves the student; it reports the first answer of every new version."""
    from tierswitch import Fixed, Router

    client, student, subscriber = _student(redis_url, namespace)
    loaded = threading.Event()
    subscriber.on_load = lambda version, meta: loaded.set()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    router = Router([student], Fixed("distilled"))
    subscriber.start()
    print(json.dumps({"ready": True}), flush=True)
    x = np.linspace(0, 1, 64)
    last = None
    while not stop.is_set():
        routed = router(x, modality="tabular")
        if routed.tier_version != last:
            last = routed.tier_version
            print(json.dumps({"served": last, "t": time.time(), "cached": routed.cached}), flush=True)
        loaded.wait(0.05)  # paced traffic, woken at once by a reload
        loaded.clear()
    subscriber.stop()


# -- the test -------------------------------------------------------------------------------------------------------
def _spawn(args: list[str]) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)


def _lines(proc: subprocess.Popen[str]) -> queue.Queue[dict]:
    out: queue.Queue[dict] = queue.Queue()

    def pump() -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            if line.startswith("{"):
                out.put(json.loads(line))

    threading.Thread(target=pump, daemon=True).start()
    return out


def _worker(redis_url: str, namespace: str, consumer: str, *extra: str) -> subprocess.Popen[str]:
    config = {"holdout_share": 0.15, "idle_replay": 2, "take_timeout_s": 0.1, "linger_s": 0.02}
    return _spawn([sys.executable, "-m", "tierswitch.cli", "distill-worker", "--redis", redis_url,
                   "--namespace", namespace, "--group", GROUP, "--consumer", consumer, "--spec", json.dumps(SPEC),
                   "--config", json.dumps(config), "--eval-every", "10", "--min-holdout", "60",
                   "--claim-idle-ms", "1000", "--audit-key", f"{namespace}:acked", "--keep", "100", *extra])


def _wait_until(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        # polling a condition owned by other processes (Redis state); the deadline bounds it, and the interval
        # leaves the 2 cores to the processes under test
        time.sleep(0.01)


def _reports_until(lines: queue.Queue[dict], version: str, timeout_s: float) -> list[dict]:
    """The server's reports, read until it reports serving ``version`` (it prints one line per new version)."""
    deadline = time.monotonic() + timeout_s
    reports: list[dict] = []
    while not reports or reports[-1]["served"] != version:
        try:
            reports.append(lines.get(timeout=max(0.01, deadline - time.monotonic())))
        except queue.Empty:
            raise AssertionError(f"the second router never served {version} within {timeout_s}s; it reported "
                                 f"{reports}") from None
    return reports


@pytest.mark.slow
def test_fleet_acknowledges_every_sample_once_and_hot_reloads(redis_url, redis_prefix):
    import redis

    client = redis.Redis.from_url(redis_url)
    stream = f"{redis_prefix}:samples"
    procs: list[subprocess.Popen[str]] = []
    try:
        srv = _spawn([sys.executable, __file__, "server", redis_url, redis_prefix])
        procs.append(srv)
        served = _lines(srv)
        assert served.get(timeout=60) == {"ready": True}

        def pending(consumer: str) -> int:
            if not client.exists(stream):
                return 0
            try:
                return len(client.xpending_range(stream, GROUP, "-", "+", 1000, consumername=consumer))
            except redis.ResponseError:  # NOGROUP: no worker has created the group yet
                return 0

        def acked() -> int:
            return int(client.llen(f"{redis_prefix}:acked"))

        prod = _spawn([sys.executable, __file__, "producer", redis_url, redis_prefix, "1500"])
        procs.append(prod)
        killed_pending = 0
        for _attempt in range(5):  # SIGKILL lands mid-batch almost always; retry the rare kill between batches
            w1 = _worker(redis_url, redis_prefix, "w1")
            procs.append(w1)
            floor = acked() + 200
            _wait_until(lambda f=floor: acked() >= f and pending("w1") > 0, 90, "worker w1 to be mid-batch")
            w1.send_signal(signal.SIGKILL)
            w1.wait(30)
            killed_pending = pending("w1")
            if killed_pending:
                break
        assert killed_pending > 0, "could not kill the worker while it held a batch"

        w2 = _worker(redis_url, redis_prefix, "w2")
        procs.append(w2)
        prod_out, prod_err = prod.communicate(timeout=180)
        assert prod.returncode == 0, prod_err[-2000:]
        produced = json.loads(prod_out.strip().splitlines()[-1])
        _wait_until(lambda: acked() >= client.xlen(stream) and client.xpending(stream, GROUP)["pending"] == 0, 120,
                    "the replacement worker to drain the stream")
        w2.send_signal(signal.SIGTERM)  # a graceful stop: it finishes its step and prints its summary
        w2_out, w2_err = w2.communicate(timeout=60)
        assert w2.returncode == 0, w2_err[-2000:]
        w2_lines = [json.loads(line) for line in w2_out.splitlines() if line.startswith("{")]
        summary = w2_lines[-1]

        # every sample on the stream was acknowledged exactly once, nothing is left pending
        ids = [entry_id.decode() for entry_id, _ in client.xrange(stream)]
        counts = collections.Counter(i.decode() for i in client.lrange(f"{redis_prefix}:acked", 0, -1))
        assert produced["dropped"] == 0 and len(ids) == produced["produced"] > 1000
        assert set(counts) == set(ids) and max(counts.values()) == 1
        assert client.xpending(stream, GROUP)["pending"] == 0
        assert summary["claimed"] >= killed_pending  # the replacement took over what the dead worker held

        # the second router served every promoted version it saw within a second of its promotion; the last one
        # may have been published just before w2 exited, so read the reports until it shows up
        current = client.get(f"{redis_prefix}:current").decode()
        reports = _reports_until(served, current, 60)
        srv.send_signal(signal.SIGTERM)
        srv.wait(30)
        assert len(reports) >= 2 and reports[0]["served"] == "0"  # the untrained "0", then promotions
        delays = []
        for report in reports[1:]:
            meta = json.loads(client.get(f"{redis_prefix}:meta:{report['served']}"))
            delays.append(report["t"] - meta["published_at"])
            assert report["cached"] is False and delays[-1] < 1.0, (report, delays[-1])
        print(f"produced {len(ids)}, killed worker held {killed_pending}, replacement claimed {summary['claimed']}, "
              f"versions served {[r['served'] for r in reports]}, delays {[round(d, 3) for d in delays]} s")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(30)
        client.close()


if __name__ == "__main__":
    role, url, ns, *rest = sys.argv[1:]
    if role == "producer":
        producer(url, ns, int(rest[0]))
    elif role == "server":
        server(url, ns)
    else:
        raise SystemExit(f"unknown role {role!r}")
