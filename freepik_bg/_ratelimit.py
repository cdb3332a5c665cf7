"""Client-side pacing shared by every task of a batch: a rate limit, a 429 pause, AIMD."""

from __future__ import annotations

import math
from typing import Protocol, runtime_checkable

import anyio

__all__ = ["AdaptiveConcurrency", "Gate", "RateGate"]

_MARGIN = 0.98


@runtime_checkable
class Gate(Protocol):
    """What paces POSTs: `RateGate` in one process, or a shared one (``freepik_bg.dask``).

    ``wait`` is awaited before every POST attempt; ``pause`` is called on a 429
    and must hold back every caller of ``wait`` sharing the gate.
    """

    async def wait(self) -> None:
        """Return when the caller may send one request."""

    def pause(self, seconds: float) -> None:
        """Hold back every caller of `wait` for ``seconds`` from now."""


class RateGate:
    """A token bucket (as GCRA) plus a shared pause, awaited before every POST attempt.

    ``rate`` requests per second on average (paced 2 % under it, so that
    timing jitter does not land requests just before a server at exactly that
    limit has its token back), up to ``burst`` at once; with ``rate=None``
    only the pause applies. A 429 anywhere calls `pause`,
    which holds back every task, so the batch backs off as one instead of
    each task hammering the server on its own schedule.

    Examples:
        >>> gate = RateGate(rate=10, burst=50)
    """

    def __init__(self, rate: float | None, burst: int = 1) -> None:
        if rate is not None and (not math.isfinite(rate) or rate <= 0):
            raise ValueError("rate must be a positive number of requests per second, or None")
        if burst < 1:
            raise ValueError("burst must be >= 1")
        self.rate = rate
        self.burst = burst
        # Pace a hair under the given rate: at exactly the server's limit, any jitter
        # lands a request just before the server's token is back, and each such 429
        # pauses the whole batch for a Retry-After (whole seconds).
        self._interval = 1.0 / (rate * _MARGIN) if rate else 0.0
        self._tat = -math.inf  # theoretical arrival time of the next request
        self._paused_until = -math.inf

    def pause(self, seconds: float) -> None:
        """Hold back every caller of `wait` for ``seconds`` from now."""
        self._paused_until = max(self._paused_until, anyio.current_time() + seconds)

    async def _sit_out_pause(self) -> None:
        # The pause can be extended while we sleep, so look again after each nap.
        while True:
            delay = self._paused_until - anyio.current_time()
            if delay <= 0:
                return
            await anyio.sleep(delay)

    async def wait(self) -> None:
        """Return when the caller may send one request."""
        await self._sit_out_pause()
        if self.rate is None:
            return
        # GCRA: reserve a slot synchronously (no await in between), then sleep until it.
        now = anyio.current_time()
        tat = max(self._tat, now)
        allowed_at = tat - (self.burst - 1) * self._interval
        self._tat = tat + self._interval
        if allowed_at > now:
            await anyio.sleep(allowed_at - now)
        # A pause may have begun while we waited for our slot.
        await self._sit_out_pause()


class AdaptiveConcurrency:
    """A concurrency limit that halves on throttling and creeps back up (AIMD).

    Items hold a token while in flight. `throttled` (a 429) halves the
    limit, at most once per ``cooldown`` seconds so one burst of 429s counts
    once; every ``limit`` successes raise it by one, up to ``maximum``.
    """

    def __init__(self, maximum: int, *, cooldown: float = 1.0) -> None:
        if maximum < 1:
            raise ValueError("concurrency must be >= 1")
        self.maximum = maximum
        self._limiter = anyio.CapacityLimiter(maximum)
        self._cooldown = cooldown
        self._last_cut = -math.inf
        self._successes = 0

    @property
    def limit(self) -> int:
        """The current limit."""
        return int(self._limiter.total_tokens)

    @property
    def in_flight(self) -> int:
        """Tokens held now."""
        return self._limiter.borrowed_tokens

    async def acquire(self, owner: object) -> None:
        """Wait for a token for ``owner`` (any hashable object)."""
        await self._limiter.acquire_on_behalf_of(owner)

    def release(self, owner: object) -> None:
        """Give ``owner``'s token back."""
        self._limiter.release_on_behalf_of(owner)

    def throttled(self) -> None:
        """Multiplicative decrease."""
        now = anyio.current_time()
        if now - self._last_cut < self._cooldown:
            return
        self._last_cut = now
        self._successes = 0
        self._limiter.total_tokens = max(1, self.limit // 2)

    def succeeded(self) -> None:
        """Additive increase."""
        if self.limit >= self.maximum:
            return
        self._successes += 1
        if self._successes >= self.limit:
            self._successes = 0
            self._limiter.total_tokens = self.limit + 1
