"""Issue 14 items 8 and 9: weight versions stay unique when Redis loses its data, and the subscriber remembers every
refused version with its reason (logged once), never raising raw errors from ``sync()``."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from redis_server import RedisServer, free_port
from tierswitch.distill.reload import WeightSubscriber
from tierswitch.distill.student import StudentSpec, build_student, student_tier
from tierswitch.distill.weights import WeightStore
from tierswitch.errors import DistillError

SPEC = StudentSpec(6, (8,), 3, ("a", "b", "c"))


def _features(x):
    return np.asarray(x, dtype=np.float32)


@pytest.fixture
def client(redis_url):
    c = redis.Redis.from_url(redis_url)
    yield c
    c.close()


def test_versions_are_unique_after_redis_loses_its_data():
    with RedisServer() as server:
        client = redis.Redis.from_url(server.url)
        store = WeightStore(client, "weights")
        tier = student_tier(SPEC, _features, seed=0)
        sub = WeightSubscriber(store, tier, poll_s=60.0)
        first = store.publish(build_student(SPEC, seed=1).state_dict(), SPEC)
        assert sub.sync() and tier.version == first
        server.kill()
        server.start()  # empty: no RDB, no AOF; seq starts again at 1
        client.connection_pool.disconnect()
        second = store.publish(build_student(SPEC, seed=2).state_dict(), SPEC)
        assert second != first and second.startswith("v1.")  # the counter restarted, the version did not repeat
        assert sub.sync() and tier.version == second  # the subscriber picks the new weights up
        client.close()


def test_same_weights_different_int8_flag_get_different_versions(client, redis_prefix):
    store = WeightStore(client, redis_prefix)
    state = build_student(SPEC, seed=1).state_dict()
    a, b = store.publish(state, SPEC), store.publish(state, SPEC, int8=True)
    assert a.split(".")[-1] != b.split(".")[-1]


def _rejections(caplog):
    return [r for r in caplog.records if r.name == "tierswitch.distill" and "not serving" in r.getMessage()]


def _check_refused_once(sub, tier, good, bad, caplog, phrase):
    caplog.clear()
    for _ in range(3):
        assert sub.sync() is False  # no raw error, no retry
    assert tier.version == good
    assert bad in sub.rejected and phrase in sub.rejected[bad]
    assert len(_rejections(caplog)) == 1  # named once


def test_a_class_count_change_is_remembered_not_retried(client, redis_prefix, caplog):
    caplog.set_level(logging.ERROR, "tierswitch.distill")
    store = WeightStore(client, redis_prefix)
    tier = student_tier(SPEC, _features, seed=0)
    sub = WeightSubscriber(store, tier, poll_s=60.0)
    good = store.publish(build_student(SPEC, seed=1).state_dict(), SPEC)
    assert sub.sync()
    wider = StudentSpec(6, (8,), 4, ("a", "b", "c", "d"))
    bad = store.publish(build_student(wider, seed=1).state_dict(), wider)
    _check_refused_once(sub, tier, good, bad, caplog, "class")


def test_deeply_nested_meta_is_remembered_not_retried(client, redis_prefix, caplog):
    caplog.set_level(logging.ERROR, "tierswitch.distill")
    store = WeightStore(client, redis_prefix)
    tier = student_tier(SPEC, _features, seed=0)
    sub = WeightSubscriber(store, tier, poll_s=60.0)
    good = store.publish(build_student(SPEC, seed=1).state_dict(), SPEC)
    assert sub.sync()
    bad = store.publish(build_student(SPEC, seed=2).state_dict(), SPEC)
    meta = json.loads(client.get(f"{redis_prefix}:meta:{bad}"))
    meta["deep"] = "@"
    client.set(f"{redis_prefix}:meta:{bad}", json.dumps(meta).replace('"@"', "[" * 100_000 + "]" * 100_000))
    _check_refused_once(sub, tier, good, bad, caplog, "nested")


def test_a_non_utf8_current_pointer_is_remembered_not_retried(client, redis_prefix, caplog):
    caplog.set_level(logging.ERROR, "tierswitch.distill")
    store = WeightStore(client, redis_prefix)
    tier = student_tier(SPEC, _features, seed=0)
    sub = WeightSubscriber(store, tier, poll_s=60.0)
    good = store.publish(build_student(SPEC, seed=1).state_dict(), SPEC)
    assert sub.sync()
    client.set(f"{redis_prefix}:current", b"v\xff\xfe")
    bad = store.current()
    _check_refused_once(sub, tier, good, bad, caplog, "pointer")


def test_sync_against_an_unreachable_store_is_a_distill_error():
    client = redis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.5,
                         retry=Retry(NoBackoff(), 0))
    sub = WeightSubscriber(WeightStore(client, "w"), student_tier(SPEC, _features, seed=0), poll_s=60.0)
    with pytest.raises(DistillError, match="cannot read"):
        sub.sync()
    assert sub.rejected == {}  # transient: not remembered
