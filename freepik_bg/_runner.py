"""The runner: pulls URLs, paces POSTs, downloads each result at once, stores it, journals it.

Each item lives through QUEUED -> POSTING -> PAID -> STORED. Stopping (Ctrl-C,
a cancelled scope, leaving the block) drains: items not yet sent are dropped
at once, and every POST already sent is finished, downloaded, stored and
journaled within ``drain_timeout``, because a processed POST costs a credit
whether or not its answer is kept. `Runner.stop` with ``drain=False`` aborts;
even then, every answer that had arrived is in the journal as paid.

It knows nothing of the client's insides: it drives any `BatchClient` (the
small protocol below, which `AsyncClient` satisfies) through its public
methods, the way aiometer's runner knows nothing of the work it runs.
One worker per slot of ``concurrency`` takes items one after another; each
item POSTs and then downloads at once, so a result never waits behind new
submissions and its 5-minute link never lapses in a queue. Input is pulled
lazily, one item per free slot, so a generator of millions (or an endless
one) runs in flat memory.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterable, Callable, Iterable
from functools import partial
from typing import Any

import anyio
import attrs
from anyio.streams.memory import MemoryObjectSendStream

from ._breaker import Breaker
from ._claims import Claims, shared_or_own
from ._config import BatchConfig
from ._dedupe import Duplicates
from ._errors import (
    FreepikError,
    JournalError,
    LinkExpiredError,
    RateLimitError,
)
from ._intake import Crew, Intake
from ._journal import Journal
from ._lifecycle import BatchClient, Flight, Phase, label
from ._models import (
    BatchStats,
    Cutout,
    ItemResult,
    ProgressEvent,
    ProgressKind,
    RetryEvent,
    Size,
)
from ._ratelimit import AdaptiveConcurrency, RateGate
from ._renditions import Assessment, Renditions, repay_needed
from ._retries import hook_errors
from ._sinks import Sink, SinkItem
from ._staging_items import Source, Staging
from ._targets import Target, resolve

__all__ = ["Runner"]

logger = logging.getLogger("freepik_bg")
_TASK = "freepik_bg batch item"


@attrs.define(slots=True, kw_only=True)
class Runner:
    """One batch's state: options, pacing, counters, the items in flight, the stop decision."""

    client: BatchClient
    sink: Sink
    config: BatchConfig
    journal: Journal | None
    gate: RateGate
    slots: AdaptiveConcurrency
    stats: BatchStats
    breaker: Breaker
    renditions: Renditions
    duplicates: Duplicates = attrs.field(factory=Duplicates)
    staging: Staging = attrs.field(factory=Staging)
    claims: Claims | None = None  # shared with batches elsewhere (Dask partitions)
    fatal: BaseException | None = None
    _stopping: bool = False
    _flights: set[Flight] = attrs.field(factory=set)
    _intake: Intake | None = None

    def close(self) -> None:
        """Close the journal if the runner opened it."""
        if self.journal is not None and self.journal is not self.config.journal:
            self.journal.close()

    # -- stopping ------------------------------------------------------------

    def stop(self, *, drain: bool = True) -> None:
        """Send nothing more; finish what was sent (``drain``) or abandon it at once."""
        self._stopping = True
        self.slots.close()
        if self._intake is not None:
            self._intake.close()
        deadline = anyio.current_time() + self.config.drain_timeout
        for flight in self._flights:
            if drain and flight.phase is not Phase.QUEUED:
                flight.scope.deadline = min(flight.scope.deadline, deadline)
            else:
                flight.scope.cancel()

    def _fail_hard(self, error: BaseException) -> None:
        # A broken journal or a raising progress hook ends the batch: keep the first
        # error, drain what was paid for, and raise it once the runner is done.
        if self.fatal is None:
            self.fatal = error
        self.stop(drain=True)

    def _emit(
        self,
        kind: ProgressKind,
        index: int,
        url: str,
        *,
        result: ItemResult | None = None,
        retry: RetryEvent | None = None,
    ) -> None:
        if self.config.progress is None:
            return
        try:
            self.config.progress(ProgressEvent(kind, index, url, result=result, retry=retry))
        except Exception as exc:
            self._fail_hard(exc)

    # -- the workers -----------------------------------------------------------

    async def run(
        self, urls: Iterable[Any] | AsyncIterable[Any], send: MemoryObjectSendStream[ItemResult]
    ) -> None:
        """Run the batch's workers (one per slot in use); raise a fatal error at the end."""
        intake = self._intake = Intake(urls)
        if self._stopping:
            intake.close()
        crew = Crew(self.config.concurrency)
        async with send, anyio.create_task_group() as tg:
            # Named here: anyio would otherwise work a name out per task.
            crew.start(partial(tg.start_soon, self._worker, intake, crew, send, name=_TASK))
        if self.fatal is not None:
            raise self.fatal

    async def _worker(
        self, intake: Intake, crew: Crew, send: MemoryObjectSendStream[ItemResult]
    ) -> None:
        # Items one after another, each under a slot of the adaptive limit: no task
        # per item, and the next item starts without waiting for another task. In this
        # task's own context: a raising on_retry hook ends the batch, never an item.
        hook_errors.set(self._fail_hard)
        while (pulled := await intake.take(self.slots)) is not None:
            crew.busy()
            index, entry = pulled
            self.stats.queued += 1
            if self.breaker.tripped:
                # Not sent: one shared reason for all of them.
                self.slots.release()
                await self._deliver(send, self._not_attempted(index, entry))
            else:
                await self._item(index, entry, send)
            crew.idle()

    async def _deliver(self, send: MemoryObjectSendStream[ItemResult], result: ItemResult) -> None:
        self._count(result)
        # The consumer may have left; the result is stored and journaled all the same.
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
            try:
                # Without a trip through the event loop while the buffer has room.
                send.send_nowait(result)
            except anyio.WouldBlock:
                await send.send(result)

    async def _item(
        self, index: int, entry: object, send: MemoryObjectSendStream[ItemResult]
    ) -> None:
        self.stats.in_flight += 1
        # Shielded only while a POST is on the wire or its result is being stored
        # (see Flight): a cancelled scope outside then drops the item only before
        # it is sent or between attempts, never while its answer is owed.
        flight = Flight(anyio.CancelScope())
        self._flights.add(flight)
        try:
            if self._stopping:
                flight.scope.cancel()
            result: ItemResult | None = None
            with flight.scope:
                result = await self._process(index, entry, flight)
        finally:
            self._flights.discard(flight)
            self.stats.in_flight -= 1
            self.slots.release()
        if result is None:
            result = flight.result_when_interrupted(label(entry))
        await self._deliver(send, result)

    def _journal(self, result: ItemResult, name: str | None = None) -> ItemResult:
        if self.journal is None or result.duplicate_of is not None:
            return result
        try:
            self.journal.record(result, size=self.config.sizes[0], name=name)
        except JournalError as exc:
            self._fail_hard(exc)
        return result

    def _count(self, result: ItemResult) -> None:
        if result.skipped:
            self.stats.skipped += 1
            kind = ProgressKind.SKIPPED
        elif result.ok:
            self.stats.stored += 1
            kind = ProgressKind.STORED
        else:
            self.stats.failed += 1
            kind = ProgressKind.FAILED
        self._emit(kind, result.index, result.image_url, result=result)

    # -- one item --------------------------------------------------------------

    def _not_attempted(self, index: int, entry: object) -> ItemResult:
        return ItemResult(index, label(entry), ok=False, error=self.breaker.not_attempted())

    async def _process(self, index: int, entry: object, flight: Flight) -> ItemResult:
        flight.index, flight.queued_at = index, anyio.current_time()
        shown = label(entry)
        self._emit(ProgressKind.QUEUED, index, shown)
        if self.breaker.tripped:
            return self._not_attempted(index, entry)
        try:
            target = resolve(entry)
        except FreepikError as exc:
            return self._journal(self._failure(flight, shown, exc))
        name = self.renditions.output.journal_name(target.stem)
        return self._journal(await self._run_target(target, flight), name)

    async def _run_target(self, target: Target, flight: Flight) -> ItemResult:
        # Duplicates are the same URL (by identity) asking for the same renditions.
        url, key = target.identity, ",".join(self.config.sizes)
        items = self.renditions.items(flight.index, target)
        item = items[self.config.sizes[0]]
        problem = self.renditions.misnamed(target, items, self.duplicates)
        if problem is not None:
            return self._failure(flight, url, problem)
        first = self.duplicates.claim(url, key, flight.index)
        if first is not None:
            self.stats.duplicates += 1
            result = await self.duplicates.follow(first, flight.index, url, key)
            if not result.ok:
                return result
            kept = self.duplicates.links(url, key) if target.stem is not None else None
            if target.stem is None or (kept is not None and kept[1] == item.name):
                return self._at_own_names(result, items)
            # Its own name (another SKU, say): stored from the first one's links,
            # without paying again while they live.
            return await self._stored_or_submit(target, flight, items, kept and kept[0])
        try:
            result = await self._stored_or_submit(target, flight, items)
        except BaseException:
            self.duplicates.abandon(url, key)
            raise
        keep = item.name if target.stem is not None else None
        self.duplicates.settle(url, key, result, keep_name=keep)
        return result

    async def _stored_or_submit(
        self,
        target: Target,
        flight: Flight,
        items: dict[Size, SinkItem],
        links: Cutout | None = None,
    ) -> ItemResult:
        url = target.identity
        try:
            plan = await self.renditions.assess(flight.index, target, items)
        except FreepikError as exc:
            return self._failure(flight, url, exc)
        if not plan.missing:
            first = plan.stored[self.config.sizes[0]]
            return flight.result(url, ok=True, location=first, locations=plan.stored, skipped=True)
        if links is not None:
            plan = attrs.evolve(plan, links=links)
        if plan.needs_post and plan.paid_before and not self.config.repay_missing_renditions:
            # Adding a rendition to an item an earlier run stored: its links are gone.
            return self._failure(flight, url, repay_needed(url, plan.missing), plan.stored)
        own = partial(self._staged_and_paid, target, plan, flight, items)
        if self.claims is None or links is not None:
            return await own()
        result = await shared_or_own(self.claims, url, flight.index, own, post=plan.needs_post)
        if result.duplicate_of is None:
            return result
        self.stats.duplicates += 1  # of an item of another batch, which stored it (or failed)
        return self._at_own_names(result, items) if result.ok else result

    def _at_own_names(self, result: ItemResult, items: dict[Size, SinkItem]) -> ItemResult:
        # A duplicate's outputs are its own names' (of the identity: the first's files).
        where = {size: self.renditions.location(items[size]) for size in items}
        return attrs.evolve(result, location=where[self.config.sizes[0]], locations=where)

    async def _staged_and_paid(
        self, target: Target, plan: Assessment, flight: Flight, items: dict[Size, SinkItem]
    ) -> ItemResult:
        if target.local is None:  # nothing to stage: no scope to enter and leave
            return await self._paid_and_stored(Source(target, None), plan, flight, items)
        async with self.staging.scope(target) as source:
            return await self._paid_and_stored(source, plan, flight, items)

    async def _before_attempt(self, flight: Flight) -> None:
        if self.breaker.tripped:
            raise self.breaker.not_attempted()
        await self.gate.wait()
        # The batch may have stopped while this task waited for its turn.
        if self.breaker.tripped:
            raise self.breaker.not_attempted()
        # The last moment an outer cancellation can drop the item for free.
        await anyio.lowlevel.checkpoint_if_cancelled()
        flight.enter(Phase.POSTING)
        self.stats.posts += 1

    def _on_retry(self, index: int, flight: Flight, shown: str) -> Callable[[RetryEvent], None]:
        def hook(event: RetryEvent) -> None:
            if event.operation == "post":
                # A staged file is POSTed by its presigned link: show its path, not the signature.
                event = attrs.evolve(event, url=shown)
            self.stats.retries += 1
            if event.ambiguous:
                self.stats.ambiguous_retries += 1
            if event.operation == "post":
                # The attempt is over: between attempts, stopping drops the item.
                flight.enter(Phase.QUEUED)
                if self._stopping:
                    flight.scope.cancel()
                self.breaker.attempt_failed(event.error, on_post=True)
                if isinstance(event.error, RateLimitError):
                    self.stats.throttled += 1
                    self.gate.pause(event.wait)
                    self.slots.throttled()
                    self.stats.concurrency = self.slots.limit
            self._emit(ProgressKind.RETRIED, index, shown, retry=event)

        return hook

    async def _post(
        self, url: str, target: Target, flight: Flight, hook: Callable[[RetryEvent], None]
    ) -> Cutout:
        try:
            cutout = await self.client.remove_background(
                url, before_attempt=lambda: self._before_attempt(flight), on_retry=(hook,)
            )
        except FreepikError as exc:
            self.breaker.attempt_failed(exc, on_post=True)
            self.breaker.item_failed(exc, on_post=True)
            raise
        flight.enter(Phase.PAID)
        self.breaker.post_succeeded()
        # Journal and reports know a staged file by its path, never by its signed link.
        if cutout.image_url == target.identity:
            return cutout
        return attrs.evolve(cutout, image_url=target.identity)

    def _may_resubmit(self, plan: Assessment, flight: Flight, *, earlier_links: bool) -> bool:
        if self._stopping:
            return False
        if earlier_links and plan.paid_before:
            # Links of an earlier run that stored part of the item: paying again is opt-in.
            return self.config.repay_missing_renditions
        return flight.resubmits < self.config.resubmit_expired

    async def _paid_and_stored(
        self, source: Source, plan: Assessment, flight: Flight, items: dict[Size, SinkItem]
    ) -> ItemResult:
        target, url = source.target, source.target.identity
        cutout, stored = plan.links, dict(plan.stored)
        if cutout is not None:
            flight.enter(Phase.PAID)
        hook = self._on_retry(flight.index, flight, url)
        while True:
            try:
                if cutout is None:
                    try:
                        submit = await source.url()  # a local file is staged here
                        cutout = await self._post(submit, target, flight, hook)
                    except FreepikError as exc:
                        flight.count(exc)
                        raise
                    flight.count(cutout)
                    flight.posted_at = anyio.current_time()
                    self._journal_posted(flight.index, cutout)
                    self._emit(ProgressKind.POSTED, flight.index, url)
                # One answer, every missing rendition: each into its own output.
                for size in plan.missing:
                    if size not in stored:
                        known = items[size]
                        item = SinkItem(known.index, known.image_url, known.name, size, cutout)
                        stored[size] = await self.client.download_with(
                            cutout, self.renditions.storer(item), size=size, on_retry=(hook,)
                        )
            except FreepikError as exc:
                # Links this item has not paid for in this run came from the journal.
                earlier_links = flight.posted_at is None
                expired = isinstance(exc, LinkExpiredError)
                if expired and self._may_resubmit(plan, flight, earlier_links=earlier_links):
                    logger.warning("link for %s expired before download; submitting again", url)
                    flight.resubmits += 1
                    self.stats.resubmits += 1
                    cutout = None
                    flight.enter(Phase.QUEUED)
                    continue
                if expired and earlier_links and plan.paid_before:
                    # Say what would get the rest: the flag that pays for it.
                    missing = tuple(size for size in plan.missing if size not in stored)
                    exc = repay_needed(url, missing, cause=exc)
                return self._failure(flight, url, exc, stored)
            self.slots.succeeded()
            self.stats.concurrency = self.slots.limit
            where = {size: stored[size] for size in self.config.sizes}
            first, now = where[self.config.sizes[0]], anyio.current_time()
            return flight.result(
                url, ok=True, location=first, locations=where, cutout=cutout, stored_at=now
            )

    def _journal_posted(self, index: int, cutout: Cutout) -> None:
        if self.journal is None:
            return
        try:
            self.journal.record_posted(index, cutout)
        except JournalError as exc:
            # Stop, but still store this one: it is paid for.
            self._fail_hard(exc)

    def _failure(
        self, flight: Flight, url: str, exc: FreepikError, stored: dict[Size, str] | None = None
    ) -> ItemResult:
        self.breaker.item_failed(exc, on_post=False)
        return flight.result(url, ok=False, error=exc, locations=stored or {})
