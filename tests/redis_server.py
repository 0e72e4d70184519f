"""A private ``redis-server`` for fault tests: started on a free loopback port, killed and restarted by pid.

Nothing is persisted (no RDB, no AOF) and its working directory is a temporary one, so a restart comes back empty,
as a replacement Redis would.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry


def free_port() -> int:
    """A TCP port nothing listens on now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """One ``redis-server`` process we own. ``start()``, ``kill()`` (SIGKILL, like a crash) and ``start()`` again
    on the same port; ``stop()`` for good. Use as a context manager."""

    def __init__(self, port: int | None = None, *, extra_args: tuple[str, ...] = ()) -> None:
        self.port = port or free_port()
        self.extra_args = extra_args
        self.proc: subprocess.Popen[bytes] | None = None
        self._dir = tempfile.mkdtemp(prefix="tierswitch-redis-")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def client(self) -> redis.Redis:
        """A plain client for administering this server (no retries, so a refused call fails at once)."""
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2, socket_connect_timeout=2,
                           retry=Retry(NoBackoff(), 0))

    def start(self, timeout_s: float = 10.0) -> RedisServer:
        """Start the server and return once it answers PING (polling, with a deadline)."""
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError(f"redis-server pid {self.proc.pid} is already running")
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not on PATH; install redis (the fault tests need the binary)")
        args = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", self._dir, "--daemonize", "no", "--loglevel", "warning", *self.extra_args]
        log_path = os.path.join(self._dir, "redis.log")  # a file, not a pipe: a chatty server can never block on it
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        probe = self.client()
        try:
            while True:
                if self.proc.poll() is not None:
                    with open(log_path, errors="replace") as log:
                        err = log.read().strip()
                    raise RuntimeError(f"redis-server exited with {self.proc.returncode}: {err}")
                try:
                    probe.ping()
                    return self
                except (redis.AuthenticationError, redis.ResponseError):  # up, it just wants a password
                    return self
                except redis.ConnectionError:
                    pass
                if time.monotonic() > deadline:
                    self.kill()  # never leave a half-started server behind
                    raise RuntimeError(f"redis-server on port {self.port} did not answer PING in {timeout_s}s")
                time.sleep(0.01)  # waiting for an external process to come up; the condition is PING answering
        finally:
            probe.close()

    def kill(self) -> None:
        """SIGKILL the server (a crash: no shutdown, no save) and reap it, so the port is free at return."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
