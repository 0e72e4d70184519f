"""``RecordedServer``: run the recorded-LLM app under uvicorn on a loopback port, in a background thread.

The socket is bound (and listening) before the thread starts, so ``base_url`` is usable the moment ``start()``
returns: connections wait in the backlog until uvicorn accepts them. ``stop()`` releases hanging requests and joins.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterable
from typing import Any

import uvicorn
from starlette.applications import Starlette

from tierswitch.testing.app import DEFAULT_LATENCY, Faults, LatencyModel, build_app
from tierswitch.testing.table import RecordedTable, load_gsm8k

__all__ = ["RecordedServer"]


class RecordedServer:
    """A real HTTP server for ``app`` on ``host:port`` (0: a free port). Use as a context manager or
    ``start()``/``stop()``; ``base_url`` is ``http://host:port/v1``; ``faults`` queues faults."""

    def __init__(self, app: Starlette, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = app
        self.host, self.port = host, port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None

    @classmethod
    def gsm8k(cls, models: Iterable[str] = ("mixtral", "gpt4"), *, scale: float = 0.0, host: str = "127.0.0.1",
              port: int = 0, table: RecordedTable | None = None, hang_s: float = 300.0) -> RecordedServer:
        """A started server for the shipped GSM8K table, serving ``models`` with the default latency model
        times ``scale`` (0: no delay)."""
        latency = {m: LatencyModel(*DEFAULT_LATENCY[m], scale=scale) for m in models}
        return cls(build_app(table if table is not None else load_gsm8k(), latency, hang_s), host, port).start()

    @property
    def state(self) -> Any:
        return self.app.state.recorded

    @property
    def faults(self) -> Faults:
        return self.state.faults  # type: ignore[no-any-return]

    @property
    def requests(self) -> int:
        return int(self.state.requests)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def start(self) -> RecordedServer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.listen(512)
        self._sock = sock
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app, log_level="warning", lifespan="off", timeout_graceful_shutdown=2,
                                access_log=False, timeout_keep_alive=30)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                        name=f"recorded-llm-{self.port}", daemon=True)
        self._thread.start()
        return self

    def _release_hangs(self) -> None:
        state = self.state
        if state.stopping is not None and state.loop is not None and not state.loop.is_closed():
            state.loop.call_soon_threadsafe(state.stopping.set)

    def stop(self) -> None:
        """Stop serving and join the thread (requests hanging on purpose are released first)."""
        if self._server is None:
            return
        self._release_hangs()
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._sock is not None:
            self._sock.close()
        self._server = None

    def serve_forever(self) -> None:
        """Block until interrupted (for the command line)."""
        try:
            if self._thread is not None:
                self._thread.join()
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def __enter__(self) -> RecordedServer:
        return self if self._server is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
