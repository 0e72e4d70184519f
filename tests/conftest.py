"""Shared fixtures. Keep each group in its own section."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

# -- Redis ----------------------------------------------------------------------------------------------------------
# Tests that need Redis read REDIS_URL (default: db 15 of the local server), work under a unique key prefix and delete
# every key under it afterwards. An unreachable Redis fails the test with the reason; it is never skipped.

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/15"


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The URL of the test Redis, checked once per session."""
    import redis

    url = os.environ.get("REDIS_URL", DEFAULT_REDIS_URL)
    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis at REDIS_URL={url!r} is unreachable ({exc}); start redis-server or set REDIS_URL")
    finally:
        client.close()
    return url


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A unique key prefix (usable as a cache namespace) for one test; every key under it is deleted afterwards."""
    import redis

    prefix = f"tstest:{uuid.uuid4().hex[:12]}"
    yield prefix
    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    try:
        batch = list(client.scan_iter(match=f"{prefix}:*", count=500))
        for start in range(0, len(batch), 500):
            client.unlink(*batch[start : start + 500])
    finally:
        client.close()


# -- BANKING77 models -----------------------------------------------------------------------------------------------
# Real intent classifiers on real data for the policy tests' quality claims (tests/banking77_models.py), trained once
# per session however many modules use them.


@pytest.fixture(scope="session")
def banking77():
    """BANKING77's test split with ``weak`` and ``strong`` fitted on the whole training split (a ``Banking77``)."""
    from tests.banking77_models import trained

    return trained()


# -- the demo's trained tiers ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo_cache(tmp_path_factory):
    """One trained-tier cache for the demo tests of a session (test_demo.py, test_demo_parts.py), never the user's
    own: the first test trains the tiers, the others load them."""
    path = tmp_path_factory.getbasetemp() / "tierswitch-demo-cache"
    path.mkdir(exist_ok=True)
    patch = pytest.MonkeyPatch()
    patch.setenv("TIERSWITCH_CACHE_DIR", str(path))
    yield path
    patch.undo()
