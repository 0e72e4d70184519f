"""RedisCache specifics on a real Redis: keys, TTL, namespaces, purge, size bound, codec, corrupt values, config."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import msgpack
import numpy as np
import pytest
import redis
from tests.contracts.cache_contract import assert_same, prediction
from tests.redis_server import RedisServer, free_port

from tierswitch.cache.codec import SCHEMA_VERSION, decode, encode
from tierswitch.cache.redis import RedisCache, redact_url
from tierswitch.errors import ConfigError, CorruptCacheValue
from tierswitch.serialization import pack
from tierswitch.types import Prediction


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def cache(redis_url: str, redis_prefix: str) -> Iterator[RedisCache]:
    # one socket timeout opens the breaker (issue 14): on a loaded test box, give replies time
    c = RedisCache(redis_url, namespace=redis_prefix, ttl_s=60, socket_timeout_s=5, connect_timeout_s=5)
    yield c
    c.close()


def test_key_layout_and_msgpack_envelope(cache: RedisCache, raw: redis.Redis, redis_prefix: str) -> None:
    cache.set("abc123", prediction("out", "distilled", "v7", probs=[0.25, 0.75]))
    key = f"{redis_prefix}:r:distilled:v7:abc123"
    assert cache.key("distilled", "v7", "abc123") == key
    env = msgpack.unpackb(raw.get(key), raw=False, strict_map_key=False)  # plain msgpack, never pickle
    assert env[0] == SCHEMA_VERSION and env[1] == "out" and env[5:7] == ["distilled", "v7"]
    assert isinstance(env[2], bytes) and env[9:11] == ["<f8", [2]], "arrays travel as raw bytes, not lists"
    assert env[11] is None  # usage: only language-model answers carry it


def test_ttl_is_set_in_milliseconds_and_entries_expire(redis_url: str, redis_prefix: str, raw: redis.Redis) -> None:
    cache = RedisCache(redis_url, namespace=redis_prefix, ttl_s=30)
    cache.set("d", prediction())
    assert 29_000 < raw.pttl(cache.key("full", "1", "d")) <= 30_000
    short = RedisCache(redis_url, namespace=redis_prefix, ttl_s=0.05)
    short.set("e", prediction())
    deadline = time.monotonic() + 5
    while short.get("full", "1", "e") is not None:  # Redis expires it on its own clock; poll the real condition
        assert time.monotonic() < deadline, "entry with a 50 ms TTL still there after 5 s"
    forever = RedisCache(redis_url, namespace=redis_prefix, ttl_s=None)
    forever.set("f", prediction())
    assert raw.pttl(forever.key("full", "1", "f")) == -1


def test_namespaces_are_isolated(redis_url: str, redis_prefix: str) -> None:
    a = RedisCache(redis_url, namespace=f"{redis_prefix}:a")
    b = RedisCache(redis_url, namespace=f"{redis_prefix}:b")
    a.set("d", prediction("from a"))
    assert b.get("full", "1", "d") is None
    b.set("d", prediction("from b"))
    a.clear()
    assert a.get("full", "1", "d") is None
    assert b.get("full", "1", "d").output == "from b"  # type: ignore[union-attr]


@pytest.mark.parametrize("bad", ["", "a b", "ns*", "ns[0]", "a:r:b", "a:r", "r"])
def test_namespace_validation(redis_url: str, bad: str) -> None:
    with pytest.raises(ConfigError, match="namespace"):
        RedisCache(redis_url, namespace=bad)


def test_purge_scans_in_batches_within_the_namespace(redis_url: str, redis_prefix: str, raw: redis.Redis) -> None:
    cache = RedisCache(redis_url, namespace=f"{redis_prefix}:p", scan_batch=50)
    neighbour = RedisCache(redis_url, namespace=f"{redis_prefix}:q")
    cache.set_many([(f"d{i}", prediction(i, "full", "1")) for i in range(300)])
    cache.set_many([(f"d{i}", prediction(i, "full", "2")) for i in range(40)])
    cache.set_many([(f"d{i}", prediction(i, "full", "1:x")) for i in range(10)])  # a version that extends "1"
    cache.set_many([(f"d{i}", prediction(i, "base", "1")) for i in range(20)])
    neighbour.set_many([(f"d{i}", prediction(i)) for i in range(30)])
    raw.set(f"{redis_prefix}:p:lock:k", b"x")  # not a result: purge leaves it alone
    assert cache.purge("full", "1") == 300
    assert cache.get("full", "1:x", "d3") is not None and cache.get("full", "2", "d3") is not None
    assert cache.purge("full") == 50
    assert cache.get("base", "1", "d3") is not None
    assert cache.purge() == 20
    assert list(raw.scan_iter(match=f"{redis_prefix}:p:r:*")) == []
    assert raw.exists(f"{redis_prefix}:p:lock:k") == 1
    assert len(list(raw.scan_iter(match=f"{redis_prefix}:q:r:*"))) == 30
    with pytest.raises(ConfigError, match="purge.version"):
        cache.purge(version="1")


def test_purge_of_one_version_works_for_a_non_ascii_tier_name(cache: RedisCache) -> None:
    cache.set_many([(f"d{i}", prediction(i, "básico", "v1")) for i in range(3)])
    cache.set("d0", prediction(0, "básico", "v2"))
    assert cache.purge("básico", "v1") == 3
    assert cache.get("básico", "v1", "d0") is None and cache.get("básico", "v2", "d0") is not None


def test_values_over_the_size_bound_are_refused(redis_url: str, redis_prefix: str, raw: redis.Redis) -> None:
    cache = RedisCache(redis_url, namespace=redis_prefix, max_value_bytes=4096)
    assert cache.set("small", prediction(np.zeros(100)))
    assert cache.set("big", prediction(np.zeros(1000))) is False  # 8,000 bytes of float64
    assert raw.exists(cache.key("full", "1", "big")) == 0
    stats = cache.stats.tiers["full"]
    assert stats.rejected == 1 and stats.sets == 1 and stats.bytes_written > 800


def test_unencodable_output_is_not_stored_and_does_not_raise(cache: RedisCache) -> None:
    assert cache.set("d", prediction(object())) is False
    assert cache.stats.tiers["full"].rejected == 1


def test_version_bump_makes_old_entries_unreachable(cache: RedisCache) -> None:
    from tierswitch.tiers import CallableTier

    tier = CallableTier("distilled", lambda x: x.upper(), version="3")
    cache.set("d", tier.predict_one("hi"))
    assert cache.get("distilled", tier.version, "d").output == "HI"  # type: ignore[union-attr]
    tier.set_version("4")
    assert cache.get("distilled", tier.version, "d") is None
    assert cache.purge("distilled", "3") == 1


@pytest.mark.parametrize(
    "array",
    [
        np.linspace(0, 1, 7, dtype=np.float32),
        np.array([np.pi, -0.0, 5e-324, 1.7976931348623157e308]),
        np.arange(24, dtype=np.int8).reshape(2, 3, 4),
        np.array([1 + 2j, -3.5j], dtype=np.complex128),
        np.array([True, False, True]),
        np.asfortranarray(np.arange(6, dtype=np.uint16).reshape(2, 3)),
        np.arange(20, dtype=np.float64)[::3],
        np.array([], dtype=np.float64),
    ],
    ids=["f32", "f64-edge", "i8-3d", "c128", "bool", "fortran", "strided", "empty"],
)
def test_arrays_round_trip_bit_exact(cache: RedisCache, array: np.ndarray) -> None:
    want = prediction(array, probs=np.array([0.1, 0.2, 0.7]))
    cache.set("a", want)
    got = cache.get("full", "1", "a")
    assert_same(got, want)
    assert np.array_equal(got.output, array) and got.output.shape == array.shape  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "planted",
    [
        b"\xc1 definitely not msgpack",
        pack([SCHEMA_VERSION + 1, "x", None, None, 1.0, "full", "1", 0.0, 0.0, None, None]),
        pack({"output": "x"}),
        pack([SCHEMA_VERSION, "x", None, None, "cheap", "full", "1", 0.0, 0.0, None, None]),
        pack([SCHEMA_VERSION, "x", b"\x00" * 7, None, 1.0, "full", "1", 0.0, 0.0, "<f8", [1]]),
        pack([SCHEMA_VERSION, "x", b"\x00" * 8, None, 1.0, "full", "1", 0.0, 0.0, "|O", [1]]),
        encode(prediction("x", "base", "1"), 0.0),  # a valid envelope of another tier must not be served here
        encode(prediction("x", "full", "2"), 0.0),
        encode(prediction("x"), 0.0)[:-3],
        encode(prediction("x"), 0.0) + b"\x00",
    ],
    ids=["garbage", "future-schema", "map", "bad-cost", "torn-probs", "object-dtype", "other-tier", "other-version",
         "truncated", "trailing"],
)
def test_corrupt_value_under_a_live_key_is_a_miss_deleted_and_counted(
    cache: RedisCache, raw: redis.Redis, planted: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    cache.set("d", prediction("good"))
    key = cache.key("full", "1", "d")
    raw.set(key, planted, px=60_000)
    with caplog.at_level(logging.WARNING, logger="tierswitch.cache"):
        assert cache.get("full", "1", "d") is None
    assert raw.exists(key) == 0, "a corrupt value must be deleted"
    assert cache.stats.tiers["full"].corrupt == 1 and cache.stats.misses == 1
    assert "corrupt" in caplog.text
    cache.set("d", prediction("good again"))
    assert cache.get("full", "1", "d").output == "good again"  # type: ignore[union-attr]


def test_decode_names_the_problem() -> None:
    with pytest.raises(CorruptCacheValue, match="schema 99"):
        decode(pack([99]))
    p, created = decode(encode(Prediction("o", "t", "v", 1.5, 0.25, None, None), 1234.5))
    assert created == 1234.5 and p.cost == 1.5 and p.latency_s == 0.25 and p.confidence is None


def test_constructor_opens_no_connection_and_passwords_never_show(caplog: pytest.LogCaptureFixture) -> None:
    dead = free_port()
    cache = RedisCache(f"redis://:s3cr%2Fet@127.0.0.1:{dead}/0")  # nothing listens there: building must not care
    assert "s3cr" not in repr(cache) and "***" in repr(cache)
    with caplog.at_level(logging.WARNING, logger="tierswitch.cache"):
        assert cache.get("full", "1", "d") is None
    assert cache.stats.errors == 1
    assert "unreachable" in caplog.text and "s3cr" not in caplog.text
    assert redact_url("rediss://user:pw@h:6380/2") == "rediss://user:***@h:6380/2"


def test_password_url_against_a_real_server_with_auth(caplog: pytest.LogCaptureFixture) -> None:
    with RedisServer(extra_args=("--requirepass", "hunter2")) as server:
        good = RedisCache(f"redis://:hunter2@127.0.0.1:{server.port}/0")
        assert good.set("d", prediction("ok")) and good.get("full", "1", "d").output == "ok"  # type: ignore[union-attr]
        bad = RedisCache(f"redis://:wrong-hunter2@127.0.0.1:{server.port}/0")
        with caplog.at_level(logging.WARNING, logger="tierswitch.cache"):
            assert bad.get("full", "1", "d") is None
        assert bad.stats.errors == 1 and "hunter2" not in caplog.text and "hunter2" not in repr(bad)
        good.close()
        bad.close()


def test_get_many_is_one_mget(redis_prefix: str) -> None:
    with RedisServer() as server:
        cache = RedisCache(server.url, namespace=redis_prefix)
        cache.set_many([(f"d{i}", prediction(i)) for i in range(64)])
        admin = server.client()
        admin.config_resetstat()
        got = cache.get_many([("full", "1", f"d{i}") for i in range(64)])
        assert [g.output for g in got if g is not None] == list(range(64))
        stats = admin.info("commandstats")
        assert stats["cmdstat_mget"]["calls"] == 1 and "cmdstat_get" not in stats
        admin.close()
        cache.close()


def test_bad_configuration_is_refused(redis_url: str) -> None:
    with pytest.raises(ConfigError, match="cache.url"):
        RedisCache("http://127.0.0.1:6379")
    with pytest.raises(ConfigError, match="decode_responses"):
        RedisCache(redis.Redis.from_url(redis_url, decode_responses=True))
    for ttl in (0, "1h", float("nan")):
        with pytest.raises(ConfigError, match="ttl_s"):
            RedisCache(redis_url, ttl_s=ttl)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="socket_timeout_s"):
        RedisCache(redis_url, socket_timeout_s="fast")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="max_value_bytes"):
        RedisCache(redis_url, max_value_bytes=0)
    with pytest.raises(ConfigError, match="backoff_max_s"):
        RedisCache(redis_url, backoff_s=2, backoff_max_s=1)


def test_built_from_a_router_config(redis_url: str, redis_prefix: str) -> None:
    from tierswitch.config import cache_from_config

    cache = cache_from_config({"kind": "redis", "url": redis_url, "namespace": redis_prefix, "ttl_s": 5})
    assert isinstance(cache, RedisCache) and cache.namespace == redis_prefix and cache.ttl_s == 5
    assert cache.set("d", prediction("configured")) and cache.get("full", "1", "d") is not None
    with pytest.raises(ConfigError, match="cache.namespace"):
        cache_from_config({"kind": "redis", "url": redis_url, "namespace": "a:r:b"})
    cache.close()


def test_a_client_can_be_passed_in(redis_url: str, redis_prefix: str) -> None:
    client = redis.Redis.from_url(redis_url)
    cache = RedisCache(client, namespace=redis_prefix)
    assert cache.set("d", prediction("shared pool")) and cache.client is client
    assert cache.get("full", "1", "d").output == "shared pool"  # type: ignore[union-attr]
    cache.close()  # leaves a client it did not create open
    assert client.ping()
    client.close()


def test_a_forked_child_reads_on_its_own_connection(cache: RedisCache) -> None:
    cache.set("d", prediction("shared"))
    assert cache.get("full", "1", "d") is not None  # the parent's read connection is open before the fork
    pid = os.fork()
    if pid == 0:  # the child: exit code 0 only when it reads the right answer
        ok = False
        try:
            got = cache.get("full", "1", "d")
            ok = got is not None and got.output == "shared" and cache.stats.errors == 0
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    for _ in range(20):  # the parent's connection was not disturbed by the child
        assert cache.get("full", "1", "d").output == "shared"  # type: ignore[union-attr]
    assert cache.stats.errors == 0


def test_importing_the_backend_does_not_import_redis() -> None:
    modules = "tierswitch, tierswitch.cache, tierswitch.cache.redis, tierswitch.cache.singleflight"
    code = f"import sys, {modules}\nprint('redis' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
