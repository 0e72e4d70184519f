"""A private event loop on a daemon thread, for calling async tiers from the sync core.

``asyncio.run`` per call would build and tear down a loop (and an HTTP client's connection pool) every time; one
long-lived loop keeps pooled connections alive across calls. It is started on first use, never at import.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

from tierswitch.errors import ConfigError

__all__ = ["PrivateLoop", "private_loop"]

T = TypeVar("T")


class PrivateLoop:
    """An event loop running forever on its own daemon thread; ``run(coro)`` blocks until the coroutine is done."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop, started on first use."""
        with self._lock:
            if self._loop is None or self._loop.is_closed():
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def serve() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                threading.Thread(target=serve, name="tierswitch-private-loop", daemon=True).start()
                ready.wait()
                self._loop = loop
            return self._loop

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the private loop and return its result (exceptions propagate).

        Called from inside that same loop it would deadlock, so that case is refused with a ``ConfigError``.
        """
        loop = self.loop
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            coro.close()
            raise ConfigError("tier", "an async tier was called synchronously from its own private loop; "
                                      "use router.acall inside async code")
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, loop)
        return future.result()


_shared = PrivateLoop()


def private_loop() -> PrivateLoop:
    """The process-wide private loop shared by every async tier called from sync code."""
    return _shared
