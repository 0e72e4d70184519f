"""The weight store and hot reload: versioned safetensors blobs, an atomic current pointer, checksum and shape
verification before anything is served, and a subscriber that follows the current version."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import redis
import torch
from redis.backoff import NoBackoff
from redis.retry import Retry

from redis_server import free_port
from tierswitch.distill.compress import quantize_int8
from tierswitch.distill.reload import WeightSubscriber
from tierswitch.distill.student import StudentSpec, build_student, student_tier
from tierswitch.distill.weights import WeightStore
from tierswitch.errors import ConfigError, DistillError, WeightVerificationError

torch.set_num_threads(1)
SPEC = StudentSpec(6, (8,), 3, ("a", "b", "c"))


@pytest.fixture
def client(redis_url):
    c = redis.Redis.from_url(redis_url)
    yield c
    c.close()


@pytest.fixture
def store(client, redis_prefix):
    return WeightStore(client, redis_prefix, keep=3)


def _features(x):
    return np.asarray(x, dtype=np.float32)


def test_spec_round_trips_through_json_and_validates():
    assert StudentSpec.from_json(SPEC.to_json()) == SPEC
    assert SPEC.shapes() == {"0.weight": (8, 6), "0.bias": (8,), "2.weight": (3, 8), "2.bias": (3,)}
    assert {k: tuple(v.shape) for k, v in build_student(SPEC).state_dict().items()} == SPEC.shapes()
    for bad, field in [({"input_dim": 0, "hidden": [], "n_classes": 2}, "student.input_dim"),
                       ({"input_dim": 2, "hidden": [4], "n_classes": 3, "classes": ["x"]}, "student.classes"),
                       ({"input_dim": 2, "n_classes": 3}, "student.hidden")]:
        with pytest.raises(ConfigError) as info:
            StudentSpec.from_dict(bad)
        assert info.value.field == field


def test_publish_then_load_gives_the_same_tensors(store):
    assert store.current() is None and store.load() is None
    model = build_student(SPEC, seed=3)
    version = store.publish(model.state_dict(), SPEC, step=10, agreement=0.9)
    loaded = store.load()
    assert loaded.version == version == store.current() and loaded.spec == SPEC
    assert loaded.meta["step"] == 10 and loaded.meta["agreement"] == 0.9
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict[name], tensor)


def test_versions_increase_and_old_ones_are_collected(store, client, redis_prefix):
    versions = [store.publish(build_student(SPEC, seed=i).state_dict(), SPEC) for i in range(5)]
    # v{seq}.{ms}.{content hash}: the counter orders them (item 8 of issue 14 made them unique across a restart)
    assert [v.split(".")[0] for v in versions] == ["v1", "v2", "v3", "v4", "v5"] and store.current() == versions[4]
    assert [v.decode() for v in client.lrange(f"{redis_prefix}:versions", 0, -1)] == versions[2:]
    assert client.get(f"{redis_prefix}:blob:{versions[0]}") is None
    assert store.load(versions[2]).version == versions[2]


def test_a_blob_that_fails_its_checksum_is_refused(store, client, redis_prefix):
    version = store.publish(build_student(SPEC).state_dict(), SPEC)
    key = f"{redis_prefix}:blob:{version}"
    blob = bytearray(client.get(key))
    blob[-1] ^= 0xFF
    client.set(key, bytes(blob))
    with pytest.raises(WeightVerificationError, match="checksum"):
        store.load()


def test_tensors_that_do_not_fit_the_spec_are_refused_even_with_a_valid_checksum(store, client, redis_prefix):
    # someone publishes a blob for another architecture and fixes up the checksum: the shapes still give it away
    other = StudentSpec(6, (16,), 3, ("a", "b", "c"))
    version = store.publish(build_student(other).state_dict(), other)
    meta = json.loads(client.get(f"{redis_prefix}:meta:{version}"))
    meta["spec"] = SPEC.to_dict()
    client.set(f"{redis_prefix}:meta:{version}", json.dumps(meta))
    with pytest.raises(WeightVerificationError, match="wrong shape"):
        store.load()


def test_missing_blob_and_non_finite_weights(store, client, redis_prefix):
    state = build_student(SPEC).state_dict()
    state["0.bias"][0] = float("nan")
    with pytest.raises(WeightVerificationError, match="NaN"):
        store.publish(state, SPEC)
    assert store.current() is None  # nothing half-published
    version = store.publish(build_student(SPEC).state_dict(), SPEC)
    client.delete(f"{redis_prefix}:blob:{version}")
    with pytest.raises(WeightVerificationError, match="missing"):
        store.load()


def test_subscriber_hot_reloads_each_published_version(store):
    tier = student_tier(SPEC, _features, seed=0)
    loaded = threading.Event()
    seen: list[str] = []

    def on_load(version, meta):
        seen.append(version)
        loaded.set()

    sub = WeightSubscriber(store, tier, on_load=on_load, poll_s=60.0).start()  # pub/sub, not the poll, must do it
    try:
        x = [np.linspace(-1, 1, 6)]
        model = build_student(SPEC, seed=7)
        version = store.publish(model.state_dict(), SPEC)
        assert loaded.wait(10)
        p = tier.predict(x)[0]
        with torch.inference_mode():
            expected = torch.softmax(model(torch.tensor(np.stack(x), dtype=torch.float32)), 1).numpy()[0]
        assert p.tier_version == version and seen == [version]
        np.testing.assert_allclose(p.probs, expected, rtol=1e-5)
        loaded.clear()
        v2 = store.publish(build_student(SPEC, seed=8).state_dict(), SPEC, int8=True)
        assert loaded.wait(10)
        assert tier.version == v2 and not isinstance(tier.module[0], torch.nn.Linear)  # INT8 as published
    finally:
        sub.stop()


def test_subscriber_never_serves_a_version_that_fails_verification(store, client, redis_prefix):
    tier = student_tier(SPEC, _features, seed=0)
    good = store.publish(build_student(SPEC, seed=1).state_dict(), SPEC)
    sub = WeightSubscriber(store, tier, poll_s=60.0)
    assert sub.sync() and tier.version == good
    bad = store.publish(build_student(SPEC, seed=2).state_dict(), SPEC)
    key = f"{redis_prefix}:blob:{bad}"
    client.set(key, client.get(key)[:-1] + b"\x00")
    assert sub.sync() is False and bad in sub.rejected
    assert tier.version == good  # still serving the last good student
    assert sub.sync() is False  # and the bad version is not retried


def test_subscriber_catches_up_on_start(store):
    version = store.publish(build_student(SPEC, seed=4).state_dict(), SPEC)
    tier = student_tier(SPEC, _features, seed=0)
    sub = WeightSubscriber(store, tier).start()
    try:
        assert tier.version == version  # loaded before start() returned
    finally:
        sub.stop()


def test_a_restarted_subscriber_catches_up_before_start_returns(store):
    tier = student_tier(SPEC, _features, seed=0)
    sub = WeightSubscriber(store, tier, poll_s=60.0).start()
    sub.stop()
    version = store.publish(build_student(SPEC, seed=5).state_dict(), SPEC)  # announced while nobody listened
    sub.start()
    try:
        assert tier.version == version  # the second start waited for its own catch-up, not the first one's
    finally:
        sub.stop()


def test_a_subscriber_that_cannot_subscribe_says_so_and_leaves_no_thread_behind():
    # nothing listens there; no retries inside redis-py, so each failed attempt is quick
    dead = redis.Redis(port=free_port(), socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    sub = WeightSubscriber(WeightStore(dead, "nowhere"), student_tier(SPEC, _features, seed=0))
    with pytest.raises(DistillError, match="is Redis up"):
        sub.start(wait_s=0.5)
    assert sub._thread is None  # stopped before raising: nothing keeps retrying behind the caller's back
    dead.close()


def test_int8_copy_is_smaller_and_close(store):
    model = build_student(StudentSpec(64, (128,), 10), seed=0)
    q = quantize_int8(model)
    x = torch.randn(32, 64)
    with torch.inference_mode():
        assert (model(x).argmax(1) == q(x).argmax(1)).float().mean() > 0.9
