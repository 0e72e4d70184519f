"""Issue 14, "make failures visible": the distill worker and the demo against an unreachable Redis, and a
``StudentSpec`` with an int ``hidden``, each give one named error line instead of a traceback or a silent run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from redis_server import free_port
from tierswitch.errors import ConfigError

SRC = str(Path(__file__).resolve().parent.parent / "src")


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    code = "import sys; from tierswitch.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": SRC})


def test_distill_worker_against_an_unreachable_redis_is_one_named_line():
    url = f"redis://127.0.0.1:{free_port()}/0"
    done = _cli("distill-worker", "--redis", url, "--spec", '{"input_dim": 4, "hidden": [8], "n_classes": 2}',
                "--idle-exit", "1")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "cannot use Redis" in lines[0] and url in lines[0], done.stderr


def test_student_spec_with_an_int_hidden_is_a_config_error():
    from tierswitch.distill.student import StudentSpec

    with pytest.raises(ConfigError) as info:
        StudentSpec(64, 32, 3, ("a", "b", "c"))
    assert info.value.field == "student.hidden" and "list" in str(info.value)
    with pytest.raises(ConfigError):
        StudentSpec(64, ("32",), 3)  # type: ignore[arg-type]
    assert StudentSpec(64, [32], 3).hidden == (32,)


def test_demo_against_an_unreachable_redis_is_one_named_line_and_exit_1(tmp_path):
    # before the fix: the whole demo ran with every cache call failing and exited 0 (checked by hand on ba4964c)
    url = f"redis://127.0.0.1:{free_port()}/0"
    done = _cli("demo", "--redis", url, "--quiet", "--limit", "20", "--out", str(tmp_path / "report"))
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "cannot use Redis" in lines[0] and url in lines[0], done.stderr
