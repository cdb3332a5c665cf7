"""Client-side pacing shared by every task of a batch: a rate limit, a 429 pause, AIMD."""

from __future__ import annotations

import math
from collections import deque
from typing import Protocol, runtime_checkable

import anyio

from ._ratelearn import RateLearner

__all__ = ["SLOW_START", "AdaptiveConcurrency", "Gate", "RateGate"]

_MARGIN = 0.98
#: The first concurrency limit of a batch that learns its rate (see `AdaptiveConcurrency`).
SLOW_START = 4
#: In slow start, the limit grows by one every this many successes: x1.5 per round trip.
#: (Doubling sends a larger last round into a server's empty bucket.)
_SLOW_START_STEP = 2


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
    only the pause applies, unless ``learn``: then each pause (a 429) teaches a
    `RateLearner` the server's limit, and requests are paced one at a time at
    the rate it learned (see ``_ratelearn``). A 429 anywhere calls `pause`,
    which holds back every task, so the batch backs off as one instead of
    each task hammering the server on its own schedule.

    Examples:
        >>> gate = RateGate(rate=10, burst=50)
        >>> learning = RateGate(rate=None, learn=True)
    """

    def __init__(self, rate: float | None, burst: int = 1, *, learn: bool = False) -> None:
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
        self.learner = RateLearner() if learn and rate is None else None
        self._pauses = 0  # how many pauses began: a slot taken before one is void

    def pause(self, seconds: float) -> None:
        """Hold back every caller of `wait` for ``seconds`` from now."""
        now = anyio.current_time()
        self._paused_until = max(self._paused_until, now + seconds)
        if self.learner is not None:
            self.learner.throttled(now, seconds)
            # The server's bucket is empty: slots taken before this 429 are void,
            # and the pace starts again at the end of the pause, one at a time.
            self._pauses += 1
            self._tat = self._paused_until

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
            if self.learner is not None:
                await self._learned_pace(self.learner)
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

    async def _learned_pace(self, learner: RateLearner) -> None:
        # One request per slot, no burst: a learned rate is what the server's bucket
        # refills at, and its burst allowance is unknown.
        while (rate := learner.rate) is not None:
            now = anyio.current_time()
            allowed_at = max(self._tat, now)
            self._tat = allowed_at + 1.0 / (rate * _MARGIN)
            pauses = self._pauses
            if allowed_at > now:
                await anyio.sleep(allowed_at - now)
            if pauses == self._pauses:
                break
            # A 429 came while we waited: its pause voids our slot; take a new one.
            await self._sit_out_pause()
        learner.sent(anyio.current_time())


class _Waiter:
    """An `acquire` waiting for a slot; ``granted`` once `_wake` has counted it as held."""

    __slots__ = ("event", "granted")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.granted = False


class AdaptiveConcurrency:
    """A concurrency limit that halves on throttling and creeps back up (AIMD).

    Items hold a slot while in flight. `throttled` (a 429) halves the
    limit, at most once per ``cooldown`` seconds so one burst of 429s counts
    once; every ``limit`` successes raise it by one, up to ``maximum``.

    With ``slow_start``, the limit starts there instead of at ``maximum`` and
    each success raises it by one (it doubles every round trip) until the first
    429 or ``maximum``, as TCP does: a server with an unknown limit sees the
    batch's first POSTs in growing rounds, not all at once.

    A counter, not a `anyio.CapacityLimiter`: a free slot is taken without a
    trip through the event loop or a borrower's bookkeeping (the batch's workers
    take one per item), and `close` turns every waiting or later `acquire` away.
    """

    def __init__(
        self, maximum: int, *, cooldown: float = 1.0, slow_start: int | None = None
    ) -> None:
        if maximum < 1:
            raise ValueError("concurrency must be >= 1")
        self.maximum = maximum
        start = maximum if slow_start is None else max(1, min(maximum, slow_start))
        self._limit = start
        self._held = 0
        self._waiters: deque[_Waiter] = deque()
        self._closed = False
        self._cooldown = cooldown
        self._last_cut = -math.inf
        self._successes = 0
        self._slow_start = start < maximum

    @property
    def limit(self) -> int:
        """The current limit."""
        return self._limit

    @property
    def in_flight(self) -> int:
        """Slots held now."""
        return self._held

    async def acquire(self) -> bool:
        """Wait for a slot: `True` once it is held, `False` if `close` came first."""
        if self._closed:
            return False
        if self._held < self._limit and not self._waiters:
            self._held += 1
            return True
        waiter = _Waiter()
        self._waiters.append(waiter)
        try:
            await waiter.event.wait()
        except BaseException:
            if waiter.granted:  # handed a slot just as we were cancelled: pass it on
                self.release()
            elif not waiter.event.is_set():
                self._waiters.remove(waiter)
            raise
        return waiter.granted

    def release(self) -> None:
        """Give a slot back."""
        self._held -= 1
        self._wake()

    def close(self) -> None:
        """Turn away every waiting and later `acquire` (the batch takes no more items)."""
        self._closed = True
        while self._waiters:
            self._waiters.popleft().event.set()

    def _wake(self) -> None:
        while self._waiters and self._held < self._limit:
            self._held += 1
            waiter = self._waiters.popleft()
            waiter.granted = True
            waiter.event.set()

    def _set_limit(self, limit: int) -> None:
        self._limit = limit
        self._wake()

    def throttled(self) -> None:
        """Multiplicative decrease."""
        if self._slow_start:
            # The first 429 ends slow start; the rate gate paces from here on, so the
            # limit goes on as if it had started at the maximum.
            self._slow_start = False
            self._set_limit(self.maximum)
        now = anyio.current_time()
        if now - self._last_cut < self._cooldown:
            return
        self._last_cut = now
        self._successes = 0
        self._set_limit(max(1, self.limit // 2))

    def succeeded(self) -> None:
        """Additive increase."""
        if self.limit >= self.maximum:
            self._slow_start = False
            return
        self._successes += 1
        if self._slow_start:
            if self._successes >= _SLOW_START_STEP:
                self._successes = 0
                self._set_limit(self.limit + 1)
            return
        if self._successes >= self.limit:
            self._successes = 0
            self._set_limit(self.limit + 1)
