"""One rate budget for a whole Dask computation: a bucket the scheduler holds.

Freepik limits each key (and IP), not each worker: N workers each pacing
themselves at ``rate`` send N times too much and all get 429s. So every
partition's client paces on a `ClusterGate`, which asks one `Bucket` for a
slot before each POST attempt. On a ``distributed`` cluster the bucket lives
in the scheduler's process (reached with ``Client.run_on_scheduler``), which
outlives any worker; with Dask's local threaded scheduler it is a plain object
of this process. A 429 on any worker pauses the bucket, so every worker backs
off, and the pause ends in paced slots rather than one burst at the server.

Why the scheduler and not a Dask Actor: an actor lives on one worker, and a
killed worker takes the budget (and every other worker's handle to it) with
it; the scheduler is the one process a Dask computation cannot lose. Why not
a static split of the rate among workers: a worker whose partitions are done
leaves its share unused, and so does every worker not yet started. The cost
is one round trip to the scheduler per POST (two when it had to wait), small
next to a POST that takes seconds, at 10-50 requests/s.
"""

from __future__ import annotations

import contextvars
import logging
import math
import threading
import time
from collections.abc import Sequence
from typing import Any, Protocol

import anyio
import attrs

from ._dask_registry import ClaimRegistry, Settlement
from ._errors import SkippedError
from ._ratelearn import RateLearner
from ._ratelimit import _MARGIN, RateGate

__all__ = ["Bucket", "BudgetSpec", "ClusterGate", "Outbox", "bucket_for", "prepay"]

logger = logging.getLogger("freepik_bg")

# A bucket nobody used for this long belongs to a finished computation.
_IDLE_TTL = 3600.0


class Bucket:
    """A thread-safe GCRA token bucket with a shared pause, on the monotonic clock.

    `reserve` hands out slots ``1 / rate`` apart (2 % under ``rate``, as
    `RateGate` does), up to ``burst`` at once, and answers how long the
    caller must wait for its slot; the caller sleeps on its own clock, so
    clocks of different machines never need to agree. With ``rate=None`` it
    learns the server's rate from the 429s of every worker (a `RateLearner`,
    as a batch does on its own) and hands out slots one at a time at it.

    Examples:
        >>> bucket = Bucket(rate=10, burst=2)
        >>> bucket.reserve(), bucket.reserve(), bucket.reserve() > 0
        (0.0, 0.0, True)
    """

    def __init__(self, rate: float | None, burst: int) -> None:
        RateGate(rate, burst)  # the same checks, the same messages
        self.rate = rate
        self.burst = burst
        self._interval = 1.0 / (rate * _MARGIN) if rate else 0.0
        self._lock = threading.Lock()
        self._tat = -math.inf
        self._paused_until = -math.inf
        self.used_at = time.monotonic()
        # Without a rate, the cluster learns the server's from the 429s of every worker.
        self.learner = RateLearner() if rate is None else None
        self.stop_reason: str | None = None
        # Which partition pays for each image (`_dask_registry`): beside the budget.
        self.claims = ClaimRegistry()

    def stop(self, reason: str) -> None:
        """Hand out no slot any more (`take` says why); the first reason stays."""
        with self._lock:
            self.used_at = time.monotonic()
            if self.stop_reason is None:
                self.stop_reason = reason

    def stopped(self) -> str | None:
        """Why the computation was stopped, if it was."""
        with self._lock:
            return self.stop_reason

    def take(self, settled: Sequence[Settlement] = ()) -> tuple[float, str | None]:
        """`reserve`, or no slot and the reason once the computation is stopped.

        ``settled``: how claimed items ended (`ClaimRegistry.settle`), riding along.
        """
        if settled:
            self.claims.settle(settled)
        reason = self.stopped()
        return (0.0, reason) if reason is not None else (self.reserve(), None)

    def reserve(self) -> float:
        """Take the next slot; return the seconds until it (0.0 for now)."""
        with self._lock:
            now = self.used_at = time.monotonic()
            learner = self.learner
            if learner is None or learner.rate is None:
                allowed_at = self._reserve_given(now)
            else:
                # A learned rate: one slot at a time, from the end of any pause.
                allowed_at = max(self._tat, now, self._paused_until)
                self._tat = allowed_at + 1.0 / (learner.rate * _MARGIN)
            if learner is not None:
                learner.sent(max(now, allowed_at))
            return max(0.0, allowed_at - now)

    def _reserve_given(self, now: float) -> float:
        if self.rate is None:
            return self._paused_until
        tat = max(self._tat, now)
        allowed_at = max(tat - (self.burst - 1) * self._interval, self._paused_until)
        self._tat = tat + self._interval
        return allowed_at

    def pause(self, seconds: float) -> None:
        """Hold back every slot for ``seconds``; after it, slots come paced, not as a burst."""
        with self._lock:
            now = self.used_at = time.monotonic()
            self._paused_until = max(self._paused_until, now + seconds)
            if self.learner is not None:
                self.learner.throttled(now, seconds)
                self._tat = self._paused_until
            if self.rate is not None:
                # The server's bucket is empty after a 429: restart at the rate, without
                # the burst allowance, or the end of the pause would earn another 429.
                self._tat = max(self._tat, self._paused_until + (self.burst - 1) * self._interval)

    def paused_for(self) -> float:
        """Seconds left of the current pause (0.0 when there is none)."""
        with self._lock:
            return max(0.0, self._paused_until - time.monotonic())


_buckets: dict[str, Bucket] = {}
_buckets_lock = threading.Lock()


def bucket_for(name: str, rate: float | None, burst: int) -> Bucket:
    """The process's bucket called ``name``, created on first use."""
    with _buckets_lock:
        now = time.monotonic()
        for stale in [k for k, b in _buckets.items() if now - b.used_at > _IDLE_TTL]:
            del _buckets[stale]
        found = _buckets.get(name)
        if found is None:
            found = _buckets[name] = Bucket(rate, burst)
        return found


# -- what runs in the scheduler's process (module-level: pickled by reference) ---


def _scheduler_reserve(name: str, rate: float | None, burst: int) -> float:
    return bucket_for(name, rate, burst).reserve()


def _scheduler_pause(name: str, rate: float | None, burst: int, seconds: float) -> None:
    bucket_for(name, rate, burst).pause(seconds)


def _scheduler_paused_for(name: str, rate: float | None, burst: int) -> float:
    return bucket_for(name, rate, burst).paused_for()


def _scheduler_take(
    name: str, rate: float | None, burst: int, settled: Sequence[Settlement] = ()
) -> tuple[float, str | None]:
    return bucket_for(name, rate, burst).take(settled)


def _scheduler_stop(name: str, rate: float | None, burst: int, reason: str) -> None:
    bucket_for(name, rate, burst).stop(reason)


def _scheduler_stopped(name: str, rate: float | None, burst: int) -> str | None:
    return bucket_for(name, rate, burst).stopped()


class _Budget(Protocol):
    def reserve(self) -> float: ...
    def pause(self, seconds: float) -> None: ...
    def paused_for(self) -> float: ...
    def take(self, settled: Sequence[Settlement] = ()) -> tuple[float, str | None]: ...
    def stop(self, reason: str) -> None: ...
    def stopped(self) -> str | None: ...


@attrs.frozen(slots=True)
class _SchedulerBudget:
    """The bucket in the scheduler's process; blocking calls, made off the event loop."""

    spec: BudgetSpec
    client: Any  # distributed.Client; typed loosely so that this module needs no dask

    def _call(self, function: Any, *args: Any) -> Any:
        spec = self.spec
        return self.client.run_on_scheduler(function, spec.name, spec.rate, spec.burst, *args)

    def reserve(self) -> float:
        return float(self._call(_scheduler_reserve))

    def pause(self, seconds: float) -> None:
        self._call(_scheduler_pause, seconds)

    def paused_for(self) -> float:
        return float(self._call(_scheduler_paused_for))

    def take(self, settled: Sequence[Settlement] = ()) -> tuple[float, str | None]:
        delay, reason = self._call(_scheduler_take, settled)
        return float(delay), reason

    def stop(self, reason: str) -> None:
        self._call(_scheduler_stop, reason)

    def stopped(self) -> str | None:
        reason: str | None = self._call(_scheduler_stopped)
        return reason


@attrs.frozen(slots=True)
class BudgetSpec:
    """The budget's name and size: what travels in the task graph (no state, no key).

    Examples:
        >>> BudgetSpec("job-1", rate=10.0, burst=50)
        BudgetSpec(name='job-1', rate=10.0, burst=50)
    """

    name: str
    rate: float | None
    burst: int

    def connect(self, outbox: Outbox | None = None) -> ClusterGate:
        """The gate for a partition running here: through the scheduler on a worker,
        where settlements in ``outbox`` ride on its round trips."""
        try:
            from distributed import get_client, get_worker

            get_worker()
        except (ImportError, ValueError):
            # Dask's local threaded scheduler: every partition is in this process.
            return ClusterGate(bucket_for(self.name, self.rate, self.burst), remote=False)
        return ClusterGate(_SchedulerBudget(self, get_client()), remote=True, outbox=outbox)

    def from_caller(self) -> _Budget:
        """The budget, from the process that computes the frame (to stop it, or ask why)."""
        try:
            from distributed import default_client

            return _SchedulerBudget(self, default_client())
        except (ImportError, ValueError):
            return bucket_for(self.name, self.rate, self.burst)


class Outbox:
    """Settlements of claims (`_dask_registry`) waiting for a round trip to the scheduler.

    They ride on the next one a partition makes anyway (a POST's slot, a claim), so an
    image that no other partition repeats costs one round trip, not two; `Outbox.due`
    says when none came soon enough, and they must go on their own.
    """

    def __init__(self) -> None:
        self._items: list[Settlement] = []
        self._waiting: anyio.Event | None = None

    def put(self, settlement: Settlement) -> None:
        self._items.append(settlement)
        if self._waiting is not None:
            self._waiting.set()

    def take(self) -> list[Settlement]:
        """Everything waiting (to send now); `put_back` if the send fails."""
        items, self._items = self._items, []
        return items

    def put_back(self, items: list[Settlement]) -> None:
        self._items[:0] = items

    async def due(self, linger: float) -> None:
        """Return once a settlement has waited ``linger`` seconds for a ride."""
        while not self._items:
            self._waiting = anyio.Event()
            await self._waiting.wait()
            self._waiting = None
        await anyio.sleep(linger)


# A claim that won an image also took its POST's slot (one round trip for both): the
# item's own task finds it here at its POST, as (when it was granted, delay, reason).
_prepaid: contextvars.ContextVar[tuple[float, float, str | None] | None] = contextvars.ContextVar(
    "freepik_bg_prepaid_slot", default=None
)
# A slot older than this went unused (the item failed before its POST): take a new one.
_PREPAID_TTL = 1.0


def prepay(slot: tuple[float, str | None]) -> None:
    """Hand the current task's next `ClusterGate.wait` the slot ``(delay, reason)``."""
    _prepaid.set((time.monotonic(), *slot))


def _prepaid_slot() -> tuple[float, str | None] | None:
    found = _prepaid.get()
    if found is None:
        return None
    _prepaid.set(None)
    granted_at, delay, reason = found
    age = time.monotonic() - granted_at
    return None if age > _PREPAID_TTL else (delay - age, reason)


class ClusterGate:
    """A `Gate` (see ``_ratelimit``) backed by a shared `Bucket`.

    A pause is also applied here at once, so that this worker's own tasks stop
    without waiting for the round trip that tells the others.
    """

    def __init__(self, budget: _Budget, *, remote: bool, outbox: Outbox | None = None) -> None:
        self._budget = budget
        self._remote = remote
        self._local = RateGate(None)
        self.outbox = outbox

    async def _call(self, function: Any) -> Any:
        if not self._remote:
            return function()
        return await anyio.to_thread.run_sync(function)

    async def wait(self) -> None:
        """Return when the cluster's budget has a slot for one request.

        Once the computation is stopped (a batch-wide failure in any partition, or the
        CLI's Ctrl-C), raise `SkippedError` instead: the batch then fails the item as
        "not attempted", without a request, as its own breaker would.
        """
        await self._local.wait()
        slot = _prepaid_slot()
        delay, reason = slot if slot is not None else await self._take()
        if reason is not None:
            raise SkippedError(f"not attempted: {reason}")
        if delay <= 0:
            return
        await anyio.sleep(delay)
        # Slots are handed out up to burst/rate seconds ahead: a stop may have come since.
        reason = await self._call(self._budget.stopped)
        if reason is not None:
            raise SkippedError(f"not attempted: {reason}")
        # A 429 elsewhere may have paused everyone while this slot was waited for.
        await self._sit_out_shared_pause()
        await self._local.wait()

    async def _take(self) -> tuple[float, str | None]:
        outbox = self.outbox
        if outbox is None:
            taken: tuple[float, str | None] = await self._call(self._budget.take)
            return taken
        settled = outbox.take()
        try:
            taken = await self._call(lambda: self._budget.take(settled))
        except BaseException:
            outbox.put_back(settled)
            raise
        return taken

    async def _sit_out_shared_pause(self) -> None:
        while True:
            left = await self._call(self._budget.paused_for)
            if left <= 0:
                return
            await anyio.sleep(left)

    async def stop(self, reason: str) -> None:
        """Stop the whole computation: every partition's next POST is not sent."""
        await self._call(lambda: self._budget.stop(reason))

    def pause(self, seconds: float) -> None:
        """Pause this worker now and the whole computation as soon as the scheduler hears."""
        self._local.pause(seconds)
        if not self._remote:
            self._budget.pause(seconds)
            return
        # Called from a retry hook, which cannot await: tell the scheduler from a thread.
        threading.Thread(
            target=self._tell_pause, args=(seconds,), name="freepik-bg-pause", daemon=True
        ).start()

    def _tell_pause(self, seconds: float) -> None:
        try:
            self._budget.pause(seconds)
        except Exception:  # the worker's own pause still holds; the others pay a 429 each
            logger.warning("could not share a 429 pause with the other workers", exc_info=True)
