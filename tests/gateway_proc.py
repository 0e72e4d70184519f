"""Real server processes for the gateway tests: a gateway (``tierswitch serve``) or the test upstream, each a
subprocess on a free loopback port, ready once it answers, stopped by its pid."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml
from tests.redis_server import free_port

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


class Proc:
    """One server subprocess we own; ``url`` once ``start()`` returned."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None, ready_path: str = "/healthz") -> None:
        self.port = free_port()
        self.args = [a.replace("{port}", str(self.port)) for a in args]
        self.env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}", **(env or {})}
        self.ready_path = ready_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = tempfile.NamedTemporaryFile(prefix="tierswitch-gw-", suffix=".log", delete=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 20.0) -> Proc:
        self.proc = subprocess.Popen(self.args, env=self.env, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while True:  # waiting for an external process to come up: the condition is it answering HTTP
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.args} exited with {self.proc.returncode}:\n{self.output()}")
            try:
                if httpx.get(self.url + self.ready_path, timeout=1).status_code < 500:
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.args} did not answer in {timeout_s}s:\n{self.output()}")
            time.sleep(0.05)

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def __enter__(self) -> Proc:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def gateway(config: dict[str, Any], tmp: Path, env: dict[str, str] | None = None, workers: int = 1,
            name: str = "router.yaml") -> Proc:
    path = tmp / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return Proc([PY, "-m", "tierswitch.serve", str(path), "--port", "{port}", "--workers", str(workers)], env)


def upstream(env: dict[str, str] | None = None) -> Proc:
    return Proc([PY, "-m", "uvicorn", "tests.gateway_upstream:app", "--port", "{port}", "--log-level", "warning"],
                env, ready_path="/calls")
