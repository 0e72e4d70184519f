"""Samples and buffers: msgpack round trips, the bounded memory buffer, the replay reservoir, and the Redis Stream
consumer group (acknowledge after use, redelivery after a crash, claiming a dead consumer's entries)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import redis

from tierswitch.distill import MemoryBuffer, RedisStreamBuffer, Reservoir, Sample, decode_sample, encode_sample
from tierswitch.errors import ConfigError, DistillError


def _sample(i: int, n_classes: int = 4) -> Sample:
    probs = np.full(n_classes, 0.1, dtype=np.float32)
    probs[i % n_classes] = 0.7
    return Sample(teacher=probs, label=i % n_classes, x=np.full(3, i, dtype=np.float32), meta={"i": i})


# -- samples ---------------------------------------------------------------------------------------------------------
def test_sample_round_trips_through_msgpack_bit_exact():
    s = Sample(teacher=np.array([0.2, 0.8], dtype=np.float32), label=1, x=np.array([1.5, -2.0], dtype=np.float32),
               truth=0, meta={"src": "full", "v": "3"})
    back = decode_sample(encode_sample(s))
    assert back.label == 1 and back.truth == 0 and back.meta == {"src": "full", "v": "3"}
    assert back.x.dtype == np.float32 and back.x.tobytes() == s.x.tobytes()
    assert back.teacher.tobytes() == s.teacher.tobytes() and back.teacher_logits is False
    raw = decode_sample(encode_sample(Sample(teacher=np.array([1.0, -1.0]), label=0, raw="hello", teacher_logits=True)))
    assert raw.x is None and raw.raw == "hello" and raw.teacher_logits


@pytest.mark.parametrize("data", [b"", b"\x93\x01\x02", encode_sample(_sample(1))[:-3]])
def test_corrupt_bytes_are_a_distill_error(data):
    with pytest.raises(DistillError):
        decode_sample(data)


def test_sample_validation():
    with pytest.raises(DistillError, match="give x"):
        Sample(teacher=np.array([0.5, 0.5]), label=0)
    with pytest.raises(DistillError, match="outside"):
        Sample(teacher=np.array([0.5, 0.5]), label=2, x=np.zeros(1))
    with pytest.raises(DistillError, match="1-D"):
        Sample(teacher=np.array([[0.5, 0.5]]), label=0, x=np.zeros(1))


# -- memory ----------------------------------------------------------------------------------------------------------
def test_memory_buffer_is_bounded_and_drops_the_oldest():
    buf = MemoryBuffer(capacity=5)
    buf.put_many(_sample(i) for i in range(8))
    assert len(buf) == 5 and buf.dropped == 3
    taken = buf.take(10)
    assert [s.meta["i"] for s in taken.samples] == [3, 4, 5, 6, 7]
    assert buf.take(10).samples == []


def test_memory_take_waits_for_the_first_sample_and_lingers_for_a_full_batch():
    buf = MemoryBuffer()
    got: list[int] = []
    started = threading.Event()

    def consumer() -> None:
        started.set()
        got.append(len(buf.take(4, timeout_s=30.0, linger_s=30.0)))

    thread = threading.Thread(target=consumer)
    thread.start()
    started.wait()
    for i in range(4):
        buf.put(_sample(i))
    thread.join(30)
    assert got == [4]  # it waited for the first, then for the batch to fill (not 30 s: the batch filled)


def test_wake_interrupts_a_waiting_take():
    buf = MemoryBuffer()
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(len(buf.take(4, timeout_s=60.0))))
    thread.start()
    buf.wake()
    thread.join(30)
    assert not thread.is_alive() and result == [0]


def test_reservoir_keeps_a_uniform_sample():
    res = Reservoir(100, seed=1)
    res.add(_sample(i) for i in range(10_000))
    kept = [s.meta["i"] for s in res.sample(100)]
    assert len(kept) == 100 == len(set(kept)) and res.seen == 10_000
    # uniform over the stream: about half the kept items come from each half (binomial sd 5)
    assert 30 <= sum(i < 5000 for i in kept) <= 70
    with pytest.raises(ConfigError):
        Reservoir(-1)


# -- Redis stream ----------------------------------------------------------------------------------------------------
@pytest.fixture
def client(redis_url):
    c = redis.Redis.from_url(redis_url)
    yield c
    c.close()


def _buffer(client, prefix, consumer="w1", **kw):
    return RedisStreamBuffer(client, f"{prefix}:samples", "g", consumer, audit_key=f"{prefix}:acked", **kw)


def _ids(client, prefix):
    return [i.decode() for i in client.lrange(f"{prefix}:acked", 0, -1)]


def test_stream_put_take_ack_once(client, redis_prefix):
    producer = _buffer(client, redis_prefix)
    producer.put_many(_sample(i) for i in range(10))
    consumer = _buffer(client, redis_prefix)
    first = consumer.take(4)
    assert [s.meta["i"] for s in first.samples] == [0, 1, 2, 3]
    assert consumer.pending() == 4  # delivered, not yet acknowledged
    consumer.ack(first)
    rest = consumer.take(100)
    consumer.ack(rest)
    assert [s.meta["i"] for s in rest.samples] == list(range(4, 10))
    assert consumer.pending() == 0 and consumer.acked == 10
    acked = _ids(client, redis_prefix)
    assert sorted(acked) == sorted(first.ids + rest.ids) and len(set(acked)) == 10


def test_a_restarted_consumer_gets_its_unacknowledged_entries_back(client, redis_prefix):
    _buffer(client, redis_prefix).put_many(_sample(i) for i in range(6))
    crashed = _buffer(client, redis_prefix)
    lost = crashed.take(4)  # taken, never acknowledged: the process "dies" here
    restarted = _buffer(client, redis_prefix)  # same consumer name
    again = restarted.take(4)
    assert again.ids == lost.ids and restarted.redelivered == 4
    restarted.ack(again)
    tail = restarted.take(10)
    restarted.ack(tail)
    assert [s.meta["i"] for s in tail.samples] == [4, 5]
    acked = _ids(client, redis_prefix)
    assert len(acked) == len(set(acked)) == 6 and restarted.pending() == 0


def test_another_consumer_claims_entries_a_dead_one_left_pending(client, redis_prefix):
    _buffer(client, redis_prefix).put_many(_sample(i) for i in range(5))
    dead = _buffer(client, redis_prefix, "dead")
    left = dead.take(3)
    live = _buffer(client, redis_prefix, "live", claim_idle_ms=0)
    claimed = live.take(3)
    assert set(claimed.ids) == set(left.ids) and live.claimed == 3
    live.ack(claimed)
    rest = live.take(10)
    live.ack(rest)
    assert sorted(s.meta["i"] for s in claimed.samples + rest.samples) == [0, 1, 2, 3, 4]
    acked = _ids(client, redis_prefix)
    assert len(acked) == len(set(acked)) == 5 and live.pending() == 0


def test_entries_are_not_claimed_before_the_idle_time(client, redis_prefix):
    _buffer(client, redis_prefix).put_many(_sample(i) for i in range(3))
    _buffer(client, redis_prefix, "slow").take(3)  # a live but slow worker
    other = _buffer(client, redis_prefix, "other", claim_idle_ms=600_000)
    assert other.take(3).samples == [] and other.claimed == 0


def test_corrupt_entries_are_acknowledged_and_counted_not_retried(client, redis_prefix):
    buf = _buffer(client, redis_prefix)
    buf.ensure_group()
    client.xadd(f"{redis_prefix}:samples", {b"s": b"not msgpack \xff"})
    buf.put(_sample(7))
    taken = buf.take(10)
    buf.ack(taken)
    assert [s.meta["i"] for s in taken.samples] == [7] and buf.corrupt == 1
    assert buf.pending() == 0 and len(_ids(client, redis_prefix)) == 2


def test_a_stream_buffer_makes_its_group_again_when_redis_lost_it(client, redis_prefix):
    buf = _buffer(client, redis_prefix)
    buf.put_many(_sample(i) for i in range(3))
    buf.ack(buf.take(10))
    client.delete(f"{redis_prefix}:samples")  # a Redis restarted without persistence (or flushed) lost it all
    buf.put_many(_sample(i) for i in range(3, 6))  # producers go on: XADD makes a new stream, without the group
    taken = buf.take(10)  # not NOGROUP on every take from now on
    buf.ack(taken)
    assert [s.meta["i"] for s in taken.samples] == [3, 4, 5] and buf.pending() == 0
    assert _ids(client, redis_prefix)[-3:] == taken.ids


def test_stream_maxlen_bounds_memory(client, redis_prefix):
    buf = _buffer(client, redis_prefix, maxlen=100)
    for chunk in range(10):
        buf.put_many(_sample(i) for i in range(chunk * 100, chunk * 100 + 100))
    assert client.xlen(f"{redis_prefix}:samples") < 300  # "~" trims whole macro nodes, so a little over 100


def test_stream_buffer_validates_its_settings(client):
    with pytest.raises(ConfigError):
        RedisStreamBuffer(client, "", "g", "c")
    with pytest.raises(ConfigError):
        RedisStreamBuffer(client, "s", "g", "c", maxlen=0)


def test_one_stream_buffer_shared_by_threads_hands_out_each_entry_once(client, redis_prefix):
    """Two threads take and acknowledge through one buffer object while a producer adds entries; with
    ``claim_idle_ms=0`` every take also tries to re-claim what the other thread holds in flight."""
    total = 400
    buf = _buffer(client, redis_prefix, claim_idle_ms=0)
    buf.ensure_group()
    producer = _buffer(client, redis_prefix, "producer")
    got: list[list[int]] = [[], []]
    lock = threading.Lock()

    def consume(mine: list[int]) -> None:
        while True:
            with lock:
                if len(got[0]) + len(got[1]) >= total:
                    return
            taken = buf.take(7, timeout_s=0.05)
            with lock:
                mine.extend(s.meta["i"] for s in taken.samples)
            buf.ack(taken)

    threads = [threading.Thread(target=consume, args=(g,), daemon=True) for g in got]
    for t in threads:
        t.start()
    for start in range(0, total, 20):
        producer.put_many(_sample(i) for i in range(start, start + 20))
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert sorted(got[0] + got[1]) == list(range(total)) and got[0] and got[1]
    acked = _ids(client, redis_prefix)
    assert len(acked) == len(set(acked)) == total and buf.pending() == 0


def test_concurrent_steps_and_replays_on_a_stream_train_each_entry_once(client, redis_prefix):
    """A Distiller whose steps take samples outside its training lock: two threads stepping and one replaying on
    the same stream, while a producer adds entries. ``claim_idle_ms=0`` makes every take try to re-claim entries
    still in flight in the other thread, so a missed in-flight check would train (and acknowledge) one twice."""
    import torch

    from tierswitch.distill import DistillConfig, Distiller
    from tierswitch.distill.student import StudentSpec, student_tier

    torch.set_num_threads(1)
    total = 600
    buf = _buffer(client, redis_prefix, claim_idle_ms=0)
    config = DistillConfig(batch_size=8, holdout_share=0.2, eval_every=5, min_holdout=10, seed=0)
    d = Distiller(student_tier(StudentSpec(3, (8,), 4), lambda x: x), buf, config)
    producer = _buffer(client, redis_prefix, "producer")
    consumed = lambda: d.counters["trained"] + d.counters["holdout"]  # noqa: E731
    done = threading.Event()
    failures: list[BaseException] = []

    def run(work) -> None:
        try:
            while not done.is_set() and consumed() < total:
                work()
        except BaseException as exc:  # surfaced below: a thread's failure must fail the test
            failures.append(exc)
            done.set()

    threads = [threading.Thread(target=run, args=(lambda: d.step(timeout_s=0.05, linger_s=0.01),)) for _ in range(2)]
    threads.append(threading.Thread(target=run, args=(d.replay_step,)))
    for t in threads:
        t.start()
    try:
        for start in range(0, total, 25):
            producer.put_many(_sample(i) for i in range(start, start + 25))
    finally:
        for t in threads:
            t.join(60)
        done.set()
    assert not failures and not any(t.is_alive() for t in threads)
    acked = _ids(client, redis_prefix)
    assert consumed() == total and len(acked) == len(set(acked)) == total and buf.pending() == 0
    assert d.counters["steps"] > 0 and d.counters["replay_steps"] > 0 and d.counters["errors"] == 0
