"""Config reload while serving: atomic swap, no request lost, a bad config keeps the old one serving."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from tierswitch.assembly.reload import ReloadingRouter
from tierswitch.errors import ConfigError
from tierswitch.tiers import CallableTier

TIERS = {"base": lambda x: ("base", [0.9, 0.1]), "full": lambda x: ("full", [0.99, 0.01])}


def write(path, tier):
    path.write_text(f"tiers:\n  base: {{cost: 1.0}}\n  full: {{cost: 10.0}}\npolicy: {{kind: fixed, tier: {tier}}}\n"
                    "cache: {kind: none}\n")


def test_reload_under_concurrent_load_loses_no_request(tmp_path):
    path = tmp_path / "router.yaml"
    write(path, "base")
    router = ReloadingRouter(path, TIERS)
    assert router("warm").output == "base"
    stop = threading.Event()
    answered, errors = [], []

    def client(worker: int) -> None:
        i = 0
        while not stop.is_set() or i < 200:
            try:
                answered.append(router(f"{worker}-{i}").output)
            except Exception as exc:  # any failure is a lost request
                errors.append(exc)
            i += 1

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(client, w) for w in range(8)]
        for n in range(30):
            write(path, "full" if n % 2 == 0 else "base")
            assert router.reload()
        stop.set()
        for future in futures:
            future.result()
    assert not errors
    assert len(answered) >= 8 * 200 and set(answered) <= {"base", "full"}
    assert router.reloads == 31
    write(path, "full")
    router.reload()
    assert router("after").output == "full"


def test_unchanged_file_is_not_reloaded_and_bad_config_keeps_serving(tmp_path):
    path = tmp_path / "router.yaml"
    write(path, "base")
    router = ReloadingRouter(path, TIERS)
    assert router("x").output == "base"
    assert not router.reload()
    path.write_text("policy: {kind: fixed, tier: 7}\n")
    with pytest.raises(ConfigError) as info:
        router.reload()
    assert info.value.field == "policy.tier" and router.last_error is info.value
    assert router("y").output == "base"


def test_cache_survives_a_reload_that_keeps_the_cache_section(tmp_path):
    path = tmp_path / "router.yaml"
    path.write_text("policy: {kind: fixed, tier: base}\ncache: {kind: memory, max_entries: 10}\n")
    router = ReloadingRouter(path, TIERS)
    router("q")
    path.write_text("policy: {kind: fixed, tier: base}\ncache: {kind: memory, max_entries: 10}\n# edited\n")
    assert router.reload()
    assert router("q").cached


def test_a_rejected_config_leaves_the_tiers_given_in_code_as_they_were(tmp_path):
    # tier objects given in code are shared by the router now serving: a config that fails validation (here its
    # policy names a tier that does not exist) must not have changed their cost or capabilities on the way
    base, full = CallableTier("base", lambda x: "b", cost=1.0), CallableTier("full", lambda x: "f", cost=10.0)
    path = tmp_path / "router.yaml"
    path.write_text("policy: {kind: fixed, tier: base}\ncache: {kind: none}\n")
    router = ReloadingRouter(path, [base, full])
    assert router("a question").cost == 1.0
    path.write_text("tiers:\n  base: {cost: 5.0, max_length: 2}\npolicy: {kind: fixed, tier: bsae}\n")
    with pytest.raises(ConfigError, match="bsae"):
        router.reload()
    assert (base.cost_model.per_call, base.capabilities.max_length) == (1.0, None)
    assert router("a question").cost == 1.0
    path.write_text("tiers:\n  base: {cost: 5.0, max_length: 2}\npolicy: {kind: fixed, tier: base}\n")
    assert router.reload() and (base.cost_model.per_call, base.capabilities.max_length) == (5.0, 2)
    assert (router("a question").tier, router("q").cost) == ("full", 5.0)  # a valid config does apply


def test_an_unreadable_or_non_utf8_config_is_a_config_error_and_the_old_one_keeps_serving(tmp_path):
    path = tmp_path / "router.yaml"
    write(path, "base")
    router = ReloadingRouter(path, TIERS)
    assert router("x").output == "base"
    path.write_bytes("policy: {kind: fixed, tier: full}  # caf\u00e9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        router.reload()
    path.unlink()
    path.mkdir()  # the watcher only survives TierswitchErrors: an OSError here ended it for good
    with pytest.raises(ConfigError, match="cannot read") as info:
        router.reload()
    assert router.last_error is info.value and router("y").output == "base"


def test_a_replaced_redis_cache_is_closed_and_the_old_router_still_answers(tmp_path, redis_url, redis_prefix):
    import redis

    path = tmp_path / "router.yaml"
    path.write_text(f"policy: {{kind: fixed, tier: base}}\ncache: {{kind: redis, url: '{redis_url}', "
                    f"namespace: '{redis_prefix}'}}\n")
    router = ReloadingRouter(path, TIERS)
    old = router.current
    old("q")
    assert old("q").cached
    observer = redis.Redis.from_url(redis_url)
    try:
        before = len(observer.client_list())  # the old cache's connections plus this one (and other clients)
        path.write_text("policy: {kind: fixed, tier: base}\ncache: {kind: memory}\n")
        assert router.reload()
        assert router.current.cache is not old.cache
        assert len(observer.client_list()) < before  # the replaced cache let go of its connections
        # a request still on the old router after the swap is answered (a miss at worst), never an error
        assert old("q").output == "base"
        assert router("q").output == "base"
    finally:
        old.cache.clear()
        old.cache.close()
        observer.close()
