"""A Dask partition's side of the claims (`_dask_registry`): the runner's `Claims`.

Before a partition's batch pays for an image, `ClusterClaims.claim` asks the
computation's registry, in the same round trip as the POST's slot from the
shared budget: an image no other partition holds costs that one round trip, as
before. How the item ended (`settle`) rides on the partition's next round trip,
or goes on its own after `LINGER` seconds without one. An image that another
partition holds waits for it, a second at a time (a holder whose worker has
died is seen at the next look), then is that item's duplicate.

On a cluster the registry is in the scheduler's process, reached with
``Client.run_on_scheduler`` (from a worker thread: the calls block); with Dask's
local threaded scheduler, it is in this process, beside the budget.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pickle
import secrets
import threading
from collections.abc import Sequence
from typing import Any

import anyio
import anyio.to_thread
import attrs

from ._dask_gate import (
    Bucket,
    BudgetSpec,
    ClusterGate,
    Outbox,
    bucket_for,
    prepay,
)
from ._dask_registry import DONE, HELD, MINE, Answer, ClaimRegistry, Settlement
from ._dedupe import duplicate_key
from ._errors import FreepikError
from ._models import ItemResult

__all__ = ["LINGER", "WAIT", "ClusterClaims", "connect", "snapshot"]

logger = logging.getLogger("freepik_bg")

WAIT = 1.0
"""Seconds a claim on an image another partition holds waits before it looks again."""
LINGER = 0.2
"""Seconds a settlement waits for a round trip to ride on before it is sent alone."""

# Request: (key, partition, attempt, global index, whether the item is to be POSTed).
_Request = tuple[int, int, str, int, bool]
_Reply = tuple[Answer, tuple[float, str | None] | None]


def _answer(bucket: Bucket, request: _Request, alive: Any) -> _Reply:
    key, partition, attempt, index, post = request
    answer = bucket.claims.claim(key, partition, attempt, index, alive)
    # The image is this item's: its POST's slot comes with the answer.
    return answer, bucket.take() if answer[0] == MINE and post else None


# -- what runs in the scheduler's process (module-level: pickled by reference) ---


def _scheduler_start(
    name: str, rate: float | None, burst: int, partition: int, attempt: str, worker: str
) -> None:
    bucket_for(name, rate, burst).claims.start(partition, attempt, worker)


async def _scheduler_claim(
    name: str,
    rate: float | None,
    burst: int,
    settled: Sequence[Settlement],
    request: _Request,
    dask_scheduler: Any = None,
) -> _Reply:
    bucket = bucket_for(name, rate, burst)
    bucket.claims.settle(settled)
    workers = dask_scheduler.workers if dask_scheduler is not None else None
    alive = None if workers is None else workers.__contains__
    reply = _answer(bucket, request, alive)
    if reply[0][0] != HELD:
        return reply
    loop = asyncio.get_running_loop()
    ended = asyncio.Event()

    def wake() -> None:
        loop.call_soon_threadsafe(ended.set)

    if bucket.claims.watch(request[0], reply[0][1], wake):
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(ended.wait(), WAIT)
    return _answer(bucket, request, alive)


def _scheduler_settle(
    name: str, rate: float | None, burst: int, settled: Sequence[Settlement]
) -> None:
    bucket_for(name, rate, burst).claims.settle(settled)


def _scheduler_finish(
    name: str,
    rate: float | None,
    burst: int,
    partition: int,
    attempt: str,
    settled: Sequence[Settlement],
    asked: Sequence[int],
) -> list[int]:
    return bucket_for(name, rate, burst).claims.finish(partition, attempt, settled, asked)


def _scheduler_snapshot(name: str, rate: float | None, burst: int) -> dict[str, Any]:
    return bucket_for(name, rate, burst).claims.snapshot()


def snapshot(client: Any, spec: BudgetSpec) -> dict[str, Any]:
    """`ClaimRegistry.snapshot` of ``spec``'s computation on ``client``'s scheduler."""
    found: dict[str, Any] = client.run_on_scheduler(
        _scheduler_snapshot, spec.name, spec.rate, spec.burst
    )
    return found


# -- the two ways to reach the registry -------------------------------------------


class _Remote:
    """The registry in the scheduler's process; blocking calls, made off the event loop."""

    def __init__(self, spec: BudgetSpec, client: Any) -> None:
        self.spec, self.client = spec, client

    def _call(self, function: Any, *args: Any) -> Any:
        spec = self.spec
        return self.client.run_on_scheduler(function, spec.name, spec.rate, spec.burst, *args)

    def start(self, partition: int, attempt: str, worker: str) -> None:
        self._call(_scheduler_start, partition, attempt, worker)

    def claim(self, settled: Sequence[Settlement], request: _Request) -> _Reply:
        answer, slot = self._call(_scheduler_claim, settled, request)
        return tuple(answer), None if slot is None else (float(slot[0]), slot[1])

    def settle(self, settled: Sequence[Settlement]) -> None:
        self._call(_scheduler_settle, settled)

    def finish(
        self, partition: int, attempt: str, settled: Sequence[Settlement], asked: Sequence[int]
    ) -> list[int]:
        found: list[int] = self._call(_scheduler_finish, partition, attempt, settled, asked)
        return found


class _Here:
    """The registry in this process (Dask's local threaded scheduler)."""

    def __init__(self, bucket: Bucket) -> None:
        self.bucket = bucket
        self.registry: ClaimRegistry = bucket.claims

    def claim(self, settled: Sequence[Settlement], request: _Request) -> _Reply:
        self.registry.settle(settled)
        reply = _answer(self.bucket, request, None)
        if reply[0][0] != HELD:
            return reply
        ended = threading.Event()
        if self.registry.watch(request[0], reply[0][1], ended.set):
            ended.wait(WAIT)
        return _answer(self.bucket, request, None)


class ClusterClaims:
    """One attempt of one partition's `Claims` (see the module's docstring).

    Indices in the registry are global (the partition's ``offset`` added), so that a
    duplicate names the item elsewhere by its input position.
    """

    def __init__(
        self, link: _Remote | _Here, *, partition: int, offset: int, sizes: str, worker: str = ""
    ) -> None:
        self._link = link
        self._worker = worker
        self._partition = partition
        self._offset = offset
        self._sizes = sizes
        self.attempt = secrets.token_hex(8)
        # Only a remote registry's settlements wait for a ride: here, each is a call.
        self.outbox = Outbox()

    def _key(self, url: str) -> int:
        return duplicate_key(url, self._sizes)

    async def start(self) -> None:
        """Say that this attempt runs (on its worker): claims of earlier ones are void."""
        if isinstance(self._link, _Remote):
            start = self._link.start
            await anyio.to_thread.run_sync(start, self._partition, self.attempt, self._worker)
        else:
            self._link.registry.start(self._partition, self.attempt, None)

    async def claim(self, url: str, index: int, *, post: bool) -> ItemResult | None:
        """See `Claims.claim`."""
        request = (self._key(url), self._partition, self.attempt, self._offset + index, post)
        while True:
            settled = self.outbox.take()
            try:
                answer, slot = await anyio.to_thread.run_sync(self._link.claim, settled, request)
            except BaseException:
                self.outbox.put_back(settled)
                raise
            if answer[0] != HELD:
                break
        if answer[0] == MINE:
            if slot is not None:
                prepay(slot)
            return None
        first = answer[1] - self._offset  # in this batch's numbering, as a duplicate's is
        if answer[0] == DONE:
            return ItemResult(index, url, ok=True, skipped=True, duplicate_of=first)
        return ItemResult(index, url, ok=False, error=answer[2], duplicate_of=first)

    def settle(self, url: str, index: int, result: ItemResult | None) -> None:
        """See `Claims.settle`."""
        outcome: Any = None
        if result is not None:
            outcome = True if result.ok else _portable(result.error)
        settlement = (self._key(url), self._partition, self.attempt, self._offset + index, outcome)
        if isinstance(self._link, _Here):
            self._link.registry.settle([settlement])
        else:
            self.outbox.put(settlement)

    async def send_due(self) -> None:
        """Send settlements that found no round trip to ride on, for as long as it runs."""
        if isinstance(self._link, _Here):
            return
        while True:
            await self.outbox.due(LINGER)
            settled = self.outbox.take()
            if not settled:
                continue
            try:
                await anyio.to_thread.run_sync(self._link.settle, settled)
            except BaseException as exc:
                self.outbox.put_back(settled)  # for the next ride, or the next try
                if not isinstance(exc, Exception):
                    raise
                logger.warning("could not send how claimed items ended", exc_info=True)

    async def finish(self, items: list[ItemResult]) -> list[ItemResult]:
        """End this attempt (its last settlements; claims it still holds are void), and
        ``items`` with those it skipped, found stored, as duplicates of the item of this
        computation that stored them."""
        skipped = [i for i, item in enumerate(items) if item.skipped and item.duplicate_of is None]
        asked = [self._key(items[i].image_url) for i in skipped]
        settled = self.outbox.take()
        args = (self._partition, self.attempt, settled, asked)
        if isinstance(self._link, _Remote):
            found = await anyio.to_thread.run_sync(self._link.finish, *args)
        else:
            found = self._link.registry.finish(*args)
        for i, first in zip(skipped, found, strict=True):
            if first >= 0 and first != self._offset + items[i].index:
                items[i] = attrs.evolve(items[i], duplicate_of=first - self._offset)
        return items


def _portable(error: FreepikError | None) -> Any:
    """``error`` as the scheduler can keep it and the other partitions unpickle it."""
    if error is None:
        return None
    try:
        pickle.dumps(error)
    except Exception:
        return FreepikError(str(error))
    return error


def connect(
    spec: BudgetSpec, partition: int, offset: int, sizes: str
) -> tuple[ClusterGate, ClusterClaims]:
    """The gate and the claims of the ``partition``-th partition (its first row at
    ``offset``), running here: through the scheduler on a worker."""
    try:
        from distributed import get_client, get_worker

        worker = get_worker().address
    except (ImportError, ValueError):
        # Dask's local threaded scheduler: every partition is in this process.
        bucket = bucket_for(spec.name, spec.rate, spec.burst)
        claims = ClusterClaims(_Here(bucket), partition=partition, offset=offset, sizes=sizes)
        return spec.connect(), claims
    client = get_client()
    link = _Remote(spec, client)
    claims = ClusterClaims(link, partition=partition, offset=offset, sizes=sizes, worker=worker)
    return spec.connect(claims.outbox), claims
