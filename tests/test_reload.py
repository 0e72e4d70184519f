"""Config reload while serving: atomic swap, no request lost, a bad config keeps the old one serving."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from tierswitch.errors import ConfigError
from tierswitch.routing.reload import ReloadingRouter

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
