"""Security: no pickle in any data path, Redis keys confined to the namespace, credentials never logged."""

from __future__ import annotations

import ast
import logging
import uuid
from pathlib import Path

import numpy as np
import pytest

from redis_server import RedisServer, free_port
from tierswitch import CallableTier, Fixed, Router
from tierswitch.cache import RedisSingleFlight
from tierswitch.cache.redis import RedisCache
from tierswitch.errors import ConfigError
from tierswitch.metrics import Registry, RouterMetrics

ROOT = Path(__file__).resolve().parents[1]
PICKLING_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal", "jsonpickle"}


# -- no pickle ----------------------------------------------------------------------------------------------
def _dotted(node: ast.AST) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


def _kw(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _is_const(node: ast.expr | None, value: object) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def pickle_uses(source: str) -> list[str]:
    """Every construct in ``source`` that can unpickle (or pickle) data, as 'line: what'."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [f"{node.lineno}: import {a.name}" for a in node.names if a.name.split(".")[0] in PICKLING_MODULES]
        elif isinstance(node, ast.ImportFrom) and node.module:
            top = node.module.split(".")[0]
            if top in PICKLING_MODULES:
                found.append(f"{node.lineno}: from {node.module} import ...")
            elif top == "torch" and any(a.name in ("load", "save") for a in node.names):
                found.append(f"{node.lineno}: from torch import load/save")
        elif isinstance(node, ast.Call):
            name = _dotted(node.func)
            last = name.rsplit(".", 1)[-1]
            if name == "torch.load" and not _is_const(_kw(node, "weights_only"), True):
                found.append(f"{node.lineno}: torch.load without weights_only=True")
            elif name in ("torch.save", "torch.jit.load"):
                found.append(f"{node.lineno}: {name} (pickle-based; use safetensors)")
            elif name in ("np.load", "numpy.load") and not _is_const(_kw(node, "allow_pickle"), False) \
                    and _kw(node, "allow_pickle") is not None:
                found.append(f"{node.lineno}: {name} with allow_pickle other than False")
            elif name in ("yaml.load", "yaml.load_all"):
                loader = _kw(node, "Loader") or (node.args[1] if len(node.args) > 1 else None)
                if loader is None or _dotted(loader).rsplit(".", 1)[-1] not in ("SafeLoader", "CSafeLoader"):
                    found.append(f"{node.lineno}: {name} without SafeLoader")
            elif name in ("yaml.unsafe_load", "yaml.full_load", "yaml.unsafe_load_all", "yaml.full_load_all"):
                found.append(f"{node.lineno}: {name}")
            elif last in ("read_pickle", "to_pickle") or name.endswith("ndarray.dumps"):
                found.append(f"{node.lineno}: {name}")
    return found


def test_the_pickle_scanner_catches_every_pattern():
    bad = {
        "import pickle": 1, "import cloudpickle as cp": 1, "from joblib import dump": 1, "import dill.settings": 1,
        "import torch\ntorch.load('w.pt')": 1, "torch.load(f, weights_only=False)": 1, "torch.save(m, f)": 1,
        "from torch import load": 1, "np.load('a.npy', allow_pickle=True)": 1, "numpy.load(f, allow_pickle=flag)": 1,
        "yaml.load(text)": 1, "yaml.load(text, Loader=yaml.Loader)": 1, "yaml.full_load(t)": 1,
        "yaml.unsafe_load(t)": 1, "df.to_pickle('x')": 1, "pd.read_pickle('x')": 1,
    }
    for snippet, n in bad.items():
        assert len(pickle_uses(snippet)) == n, snippet
    good = ["torch.load(f, weights_only=True)", "np.load(f)", "np.load(f, allow_pickle=False)",
            "yaml.safe_load(t)", "yaml.load(t, Loader=yaml.SafeLoader)", "import msgpack", "x = 'import pickle'"]
    for snippet in good:
        assert pickle_uses(snippet) == [], snippet


def test_no_pickle_anywhere_in_the_package():
    offenders = []
    for path in sorted((ROOT / "src").rglob("*.py")):
        offenders += [f"{path.relative_to(ROOT)}:{hit}" for hit in pickle_uses(path.read_text(encoding="utf-8"))]
    assert offenders == [], "pickle-capable calls in src/:\n" + "\n".join(offenders)


# -- a private redis-server (tests/redis_server.py) ----------------------------------------------------------
@pytest.fixture()
def private_redis():
    with RedisServer() as server:
        yield server.port


def test_redis_keys_stay_inside_the_namespace(private_redis):
    import redis

    port = private_redis
    raw = redis.Redis(port=port)
    foreign = {b"other:r:base:1:abc": b"x", b"tierswitch:r:base:1:abc": b"y", b"unrelated": b"z"}
    for key, value in foreign.items():
        raw.set(key, value)
    ns = f"sec-{uuid.uuid4().hex[:8]}"
    cache = RedisCache(f"redis://127.0.0.1:{port}/0", namespace=ns)
    router = Router([CallableTier("base", lambda x: ("b", np.array([0.6, 0.4]))), CallableTier("full", str.upper)],
                    Fixed("base"), cache=cache, single_flight=RedisSingleFlight(cache))
    for i in range(20):
        router(f"question {i % 10}")
    router.batch([f"batch {i}" for i in range(30)])
    keys = set(raw.scan_iter(count=1000))
    ours = keys - set(foreign)
    assert len(ours) == 40 and all(k.startswith(f"{ns}:r:".encode()) for k in ours)
    assert cache.stats.hits == 10
    cache.clear()
    assert set(raw.scan_iter(count=1000)) == set(foreign)  # only our namespace went
    for bad in ("a*", "ns[1]", "x y", "", "a:r:b"):
        with pytest.raises(ConfigError):
            RedisCache(f"redis://127.0.0.1:{port}/0", namespace=bad)
    cache.close()
    raw.close()


# -- credentials --------------------------------------------------------------------------------------------
SECRET = "S3cr@t-pw/with:chars"
QUOTED = "S3cr%40t-pw%2Fwith%3Achars"


def assert_secret_absent(*texts: str) -> None:
    for text in texts:
        assert SECRET not in text and QUOTED not in text and "S3cr" not in text


def exercise(url: str) -> tuple[Router, RedisCache, str]:
    cache = RedisCache(url, namespace=f"cred-{uuid.uuid4().hex[:8]}", failure_threshold=2, backoff_s=0.01)
    router = Router([CallableTier("base", str.upper)], Fixed("base"), cache=cache)
    metrics = RouterMetrics(router, Registry())
    outputs = [router(f"q{i % 3}").output for i in range(12)]
    assert outputs == [f"Q{i % 3}" for i in range(12)]  # served whatever Redis did
    return router, cache, metrics.registry.render()


def test_credentials_never_reach_logs_reprs_errors_or_metrics_with_redis_down(caplog, capfd):
    caplog.set_level(logging.DEBUG)
    url = f"redis://admin:{QUOTED}@127.0.0.1:{free_port()}/0"  # nothing listens there
    router, cache, scraped = exercise(url)
    assert cache.stats.errors > 0 and "unreachable" in caplog.text  # the failure was logged ...
    errors = []
    try:
        cache.run(cache.client.ping)
    except Exception as exc:  # noqa: BLE001 - the message is what is checked
        errors.append(f"{exc!r} {exc} {exc.__cause__!r}")
    out, err = capfd.readouterr()
    assert "***" in cache.url and "***" in repr(cache)
    assert_secret_absent(caplog.text, repr(cache), cache.url, str(cache.health()), scraped, out, err, *errors,
                         str(router.stats.snapshot()))


def test_credentials_never_logged_with_a_real_password_protected_server(caplog, capfd):
    caplog.set_level(logging.DEBUG)
    with RedisServer(extra_args=("--requirepass", SECRET)) as server:
        port = server.port
        _, good, scraped_good = exercise(f"redis://:{QUOTED}@127.0.0.1:{port}/0")
        assert good.stats.hits == 9 and good.stats.errors == 0  # authenticated for real
        _, bad, scraped_bad = exercise(f"redis://:{QUOTED}x@127.0.0.1:{port}/0")
        assert bad.stats.errors > 0 and ("refused" in caplog.text or "unreachable" in caplog.text)
        good.clear()
        good.close()
        bad.close()
    out, err = capfd.readouterr()
    assert_secret_absent(caplog.text, scraped_good, scraped_bad, out, err, repr(good), repr(bad))
