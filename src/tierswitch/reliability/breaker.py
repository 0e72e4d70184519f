"""A per-tier circuit breaker: closed -> open after N failures in a window -> half-open probes -> closed.

``allow()`` is asked before every call and ``record(success)`` told after it. While closed, failures are counted over
a sliding window of ``window_s`` seconds; ``failures`` of them open the breaker. While open, every call is refused
until ``cooldown_s`` has passed; then the breaker is half-open and lets ``half_open_probes`` calls through at a time.
A successful probe closes it (the failure window starts empty); a failed probe opens it again for another cool-down.
The clock is injected, so tests move time instead of sleeping.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Literal

from tierswitch.errors import ConfigError
from tierswitch.validation import describe

__all__ = ["BreakerState", "CircuitBreaker"]

BreakerState = Literal["closed", "open", "half_open"]
STATE_CODES: dict[str, int] = {"closed": 0, "half_open": 1, "open": 2}


class CircuitBreaker:
    """Open after ``failures`` failures within ``window_s`` seconds; probe after ``cooldown_s``; close on success.

    Thread-safe. Counters for metrics: ``opened`` (times the breaker opened, including re-opening after a failed
    probe), ``refused`` (calls refused while open or while the probes were all taken), ``probes`` (half-open calls let
    through).
    """

    def __init__(
        self,
        failures: int = 5,
        window_s: float = 30.0,
        cooldown_s: float = 10.0,
        *,
        half_open_probes: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(failures, bool) or not isinstance(failures, int) or failures < 1:
            raise ConfigError("breaker.failures", f"must be an integer >= 1, got {describe(failures)}")
        for field, value in (("window_s", window_s), ("cooldown_s", cooldown_s)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ConfigError(f"breaker.{field}", f"must be a number of seconds > 0, got {describe(value)}")
        if isinstance(half_open_probes, bool) or not isinstance(half_open_probes, int) or half_open_probes < 1:
            raise ConfigError("breaker.half_open_probes", f"must be an integer >= 1, got {describe(half_open_probes)}")
        self.failures = failures
        self.window_s = float(window_s)
        self.cooldown_s = float(cooldown_s)
        self.half_open_probes = half_open_probes
        self._clock = clock
        self._lock = threading.Lock()
        self._state: BreakerState = "closed"
        self._recent: deque[float] = deque()  # failure times inside the window, while closed
        self._opened_at = 0.0
        self._probing = 0  # half-open calls in flight
        self.opened = 0
        self.refused = 0
        self.probes = 0

    @property
    def state(self) -> BreakerState:
        """closed, open or half_open (an open breaker whose cool-down is over reports half_open)."""
        with self._lock:
            return self._current(self._clock())

    def _current(self, now: float) -> BreakerState:
        if self._state == "open" and now - self._opened_at >= self.cooldown_s:
            self._state = "half_open"
            self._probing = 0
        return self._state

    def allow(self) -> bool:
        """True when a call may go to the tier now. A True from a half-open breaker reserves a probe slot, so the
        caller must report the outcome with ``record``."""
        with self._lock:
            state = self._current(self._clock())
            if state == "closed":
                return True
            if state == "half_open" and self._probing < self.half_open_probes:
                self._probing += 1
                self.probes += 1
                return True
            self.refused += 1
            return False

    def record(self, success: bool) -> None:
        """Report the outcome of a call that ``allow`` let through."""
        with self._lock:
            now = self._clock()
            state = self._current(now)
            if state == "half_open":
                self._probing = max(0, self._probing - 1)
                if success:
                    self._state = "closed"
                    self._recent.clear()
                else:
                    self._open(now)
                return
            if success or state == "open":  # a straggler from before the breaker opened changes nothing
                return
            self._recent.append(now)
            while self._recent and now - self._recent[0] > self.window_s:
                self._recent.popleft()
            if len(self._recent) >= self.failures:
                self._open(now)

    def release(self) -> None:
        """A call ``allow`` let through ended without an outcome (cancelled, or an error that is not the tier's):
        free its half-open probe slot, change nothing else."""
        with self._lock:
            if self._current(self._clock()) == "half_open":
                self._probing = max(0, self._probing - 1)

    def _open(self, now: float) -> None:
        self._state = "open"
        self._opened_at = now
        self._recent.clear()
        self.opened += 1

    def retry_in(self) -> float:
        """Seconds until an open breaker lets a probe through (0 when it is not open)."""
        with self._lock:
            if self._current(self._clock()) != "open":
                return 0.0
            return max(0.0, self._opened_at + self.cooldown_s - self._clock())

    def snapshot(self) -> dict[str, object]:
        """State and counters, for metrics and reports."""
        with self._lock:
            state = self._current(self._clock())
            return {"state": state, "state_code": STATE_CODES[state], "opened": self.opened,
                    "refused": self.refused, "probes": self.probes, "recent_failures": len(self._recent)}

    def __repr__(self) -> str:
        return (f"CircuitBreaker(failures={self.failures}, window_s={self.window_s}, cooldown_s={self.cooldown_s}, "
                f"state={self.state!r})")
