"""``tierswitch distill-worker`` in-process: consumes the stream, publishes a promoted student with its spec, resumes
from the store, and reports bad settings as errors naming what to fix."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import numpy as np
import redis
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

from tierswitch.cli import main as cli_main
from tierswitch.distill import RedisStreamBuffer, Sample, StudentSpec, WeightStore
from tierswitch.distill.worker import main

SPEC = {"kind": "mlp", "input_dim": 64, "hidden": [32], "n_classes": 10, "classes": list(range(10))}


def _fill(client, prefix, n):
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    teacher = LogisticRegression(max_iter=1000, C=10).fit(X[:500], y[:500])
    probs = teacher.predict_proba(X[500:500 + n]).astype(np.float32)
    buf = RedisStreamBuffer(client, f"{prefix}:samples", "distill", "producer")
    buf.put_many(Sample(teacher=p, label=int(p.argmax()), x=x) for x, p in zip(X[500:500 + n], probs))


def _args(url, prefix, *extra):
    return ["--redis", url, "--namespace", prefix, "--consumer", "w", "--audit-key", f"{prefix}:acked",
            "--eval-every", "5", "--min-holdout", "40", "--config", '{"holdout_share": 0.2, "idle_replay": 3}',
            *extra]


def test_worker_trains_publishes_and_resumes(redis_url, redis_prefix, capsys):
    client = redis.Redis.from_url(redis_url)
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        _fill(client, redis_prefix, 1000)
        assert main(_args(redis_url, redis_prefix, "--spec", json.dumps(SPEC), "--max-samples", "1000")) == 0
        # run in-process, the worker hands the caller its own signal handlers back (Ctrl-C works again)
        assert {sig: signal.getsignal(sig) for sig in handlers} == handlers
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        promoted = [e for e in lines if e["event"] == "promoted"]
        summary = lines[-1]
        assert promoted and summary["event"] == "exit" and summary["acked"] == 1000
        assert client.llen(f"{redis_prefix}:acked") == 1000
        store = WeightStore(client, redis_prefix)
        loaded = store.load()
        assert loaded.version == promoted[-1]["version"] and loaded.spec == StudentSpec.from_dict(SPEC)
        # a restart without --spec resumes from the published student and keeps the version sequence
        _fill(client, redis_prefix, 200)
        assert main(_args(redis_url, redis_prefix, "--max-samples", "200")) == 0
        resumed = json.loads(capsys.readouterr().out.splitlines()[-1])
        assert resumed["version"].startswith("v") and resumed["acked"] == 200
    finally:
        client.close()


def test_worker_without_a_spec_or_published_student_says_what_to_do(redis_url, redis_prefix, capsys):
    assert cli_main(["distill-worker", *_args(redis_url, redis_prefix, "--max-samples", "1")]) == 1
    assert "--spec" in capsys.readouterr().err
    assert cli_main(["distill-worker", *_args(redis_url, redis_prefix, "--spec", '{"input_dim": 0}')]) == 1
    assert "student" in capsys.readouterr().err


def test_worker_config_must_be_a_json_object(redis_url, redis_prefix, tmp_path, capsys):
    listed = tmp_path / "config.json"
    listed.write_text("[32, 0.5]")
    argv = ["distill-worker", "--redis", redis_url, "--namespace", redis_prefix, "--config", str(listed)]
    assert cli_main(argv) == 1
    assert "--config" in capsys.readouterr().err


def test_distill_package_imports_no_torch_or_redis():
    code = "import sys, tierswitch.distill\nprint([m for m in ('torch', 'redis') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
