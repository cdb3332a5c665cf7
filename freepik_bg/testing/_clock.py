"""The emulator's clock: monotonic time that tests can move forward without sleeping."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["Clock"]


class Clock:
    """Monotonic time that tests can move forward without sleeping.

    Link expiry and rate-limit refills read this clock; latency and stalls use real time.
    """

    def __init__(self, source: Callable[[], float] | None = None) -> None:
        self._source = source or time.monotonic
        self._offset = 0.0
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._source() + self._offset

    @property
    def offset(self) -> float:
        """The seconds `advance` has added so far."""
        with self._lock:
            return self._offset

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("time only moves forward")
        with self._lock:
            self._offset += seconds
