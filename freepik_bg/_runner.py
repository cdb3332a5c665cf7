"""The runner: pulls URLs, paces POSTs, downloads each result at once, stores it, journals it.

It knows nothing of the client's insides: it drives any `BatchClient` (the
small protocol below, which `AsyncClient` satisfies) through its public
methods, the way aiometer's runner knows nothing of the work it runs.
Each item is one task that POSTs and then downloads at once, so a result
never waits behind new submissions and its 5-minute link never lapses in a
queue. Input is pulled lazily, one item per free concurrency slot, so a
generator of millions (or an endless one) runs in flat memory.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Sequence,
)
from contextlib import aclosing
from typing import Protocol, TypeVar

import anyio
import attrs
from anyio.abc import ObjectSendStream

from ._config import BatchConfig, validate_image_url
from ._errors import (
    AuthenticationError,
    FreepikError,
    InsufficientCreditsError,
    LinkExpiredError,
    PermissionDeniedError,
    RateLimitError,
    SinkError,
    SkippedError,
)
from ._journal import Journal
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
from ._retries import RetryHook, RetryPolicy
from ._sinks import DirectorySink, Sink, SinkItem, output_name

__all__ = ["BatchClient", "Runner"]

logger = logging.getLogger("freepik_bg")

T = TypeVar("T")

# These mean every further request would fail the same way.
# A failing sink (disk full, no permission) would fail every later item too,
# each after paying for its result: stop, as for a refused key or no credits.
_STOPPING_ERRORS = (
    AuthenticationError,
    InsufficientCreditsError,
    PermissionDeniedError,
    SinkError,
)


class BatchClient(Protocol):
    """What the runner needs from a client: submit with hooks, download into a consumer."""

    @property
    def retry_policy(self) -> RetryPolicy:
        """The policy whose public knobs (``max_retry_after``) the runner reads."""
        ...

    async def remove_background(
        self,
        image_url: str,
        *,
        on_retry: RetryHook | Sequence[RetryHook] = (),
        before_attempt: Callable[[], Awaitable[None]] | None = None,
    ) -> Cutout:
        """POST ``image_url``; ``before_attempt`` runs before every attempt."""
        ...

    async def download_with(
        self,
        cutout: Cutout,
        consumer: Callable[[AsyncIterator[bytes]], Awaitable[T]],
        *,
        size: Size = "high_resolution",
        on_retry: RetryHook | Sequence[RetryHook] = (),
    ) -> T:
        """Stream one rendition of ``cutout`` into ``consumer``."""
        ...


async def _iterate(urls: Iterable[str] | AsyncIterable[str]) -> AsyncGenerator[str, None]:
    if isinstance(urls, AsyncIterable):
        async for url in urls:
            yield url
    else:
        for url in urls:
            yield url


@attrs.define(slots=True, kw_only=True)
class Runner:
    """One batch's state: options, pacing, counters, and the stop decision."""

    client: BatchClient
    sink: Sink
    config: BatchConfig
    journal: Journal | None
    gate: RateGate
    slots: AdaptiveConcurrency
    stats: BatchStats
    stop_error: FreepikError | None = None

    @classmethod
    def create(cls, client: BatchClient, sink: Sink, config: BatchConfig) -> Runner:
        """A runner for ``config``; it opens the journal when given a path."""
        journal = config.journal
        if journal is not None and not isinstance(journal, Journal):
            journal = Journal(journal)
        return cls(
            client=client,
            sink=sink,
            config=config,
            journal=journal,
            gate=RateGate(config.rate, config.burst),
            slots=AdaptiveConcurrency(config.concurrency),
            stats=BatchStats(concurrency=config.concurrency),
        )

    def close(self) -> None:
        """Close the journal if the runner opened it."""
        if self.journal is not None and self.journal is not self.config.journal:
            self.journal.close()

    def _emit(
        self,
        kind: ProgressKind,
        index: int,
        url: str,
        *,
        result: ItemResult | None = None,
        retry: RetryEvent | None = None,
    ) -> None:
        if self.config.progress is not None:
            self.config.progress(ProgressEvent(kind, index, url, result=result, retry=retry))

    async def run(
        self, urls: Iterable[str] | AsyncIterable[str], send: ObjectSendStream[ItemResult]
    ) -> None:
        async with send, anyio.create_task_group() as tg, aclosing(_iterate(urls)) as source:
            index = 0
            while True:
                owner = object()
                await self.slots.acquire(owner)
                try:
                    url = await source.__anext__()
                except StopAsyncIteration:
                    self.slots.release(owner)
                    break
                except BaseException:
                    self.slots.release(owner)
                    raise
                self.stats.queued += 1
                tg.start_soon(self._item, index, url, owner, send)
                index += 1

    async def _item(
        self, index: int, url: object, owner: object, send: ObjectSendStream[ItemResult]
    ) -> None:
        self.stats.in_flight += 1
        try:
            result = await self._process(index, url)
            if self.journal is not None:
                self.journal.record(result, size=self.config.size)
            self._count(result)
            await send.send(result)
        finally:
            self.stats.in_flight -= 1
            self.slots.release(owner)

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

    async def _process(self, index: int, raw_url: object) -> ItemResult:
        queued_at = anyio.current_time()
        url = raw_url if isinstance(raw_url, str) else repr(raw_url)
        self._emit(ProgressKind.QUEUED, index, url)
        if self.stop_error is not None:
            return self._stopped(index, url, queued_at)
        try:
            url = validate_image_url(raw_url)
        except FreepikError as exc:
            return self._failure(index, url, exc, queued_at=queued_at)

        item = SinkItem(
            index=index,
            image_url=url,
            name=output_name(url, self.config.size),
            size=self.config.size,
        )
        if not self.config.overwrite:
            done = self.journal is not None and self.journal.is_stored(url, self.config.size)
            # The journal is enough: no need to ask the sink (a request, for object storage).
            location = None if done else await self.sink.exists(item)
            if done or location is not None:
                return ItemResult(
                    index=index,
                    image_url=url,
                    ok=True,
                    location=location or self._location(item),
                    skipped=True,
                    queued_at=queued_at,
                )
        return await self._submit_and_store(index, url, item, queued_at)

    def _location(self, item: SinkItem) -> str:
        if isinstance(self.sink, DirectorySink):
            return str(self.sink.path_for(item))
        return item.name

    def _stopped(self, index: int, url: str, queued_at: float) -> ItemResult:
        error = copy.copy(self.stop_error)
        if error is None:  # pragma: no cover - only called once stop_error is set
            error = SkippedError("batch stopped")
        error.attempts = error.ambiguous_retries = 0
        return ItemResult(index=index, image_url=url, ok=False, error=error, queued_at=queued_at)

    def _raise_if_stopped(self) -> None:
        if self.stop_error is not None:
            raise SkippedError(f"batch stopped: {self.stop_error}", cause=self.stop_error)

    async def _before_attempt(self) -> None:
        self._raise_if_stopped()
        await self.gate.wait()
        # The batch may have stopped while this task waited for its turn.
        self._raise_if_stopped()
        self.stats.posts += 1

    def _on_retry(self, index: int) -> Callable[[RetryEvent], None]:
        def hook(event: RetryEvent) -> None:
            self.stats.retries += 1
            if event.ambiguous:
                self.stats.ambiguous_retries += 1
            if event.operation == "post" and isinstance(event.error, RateLimitError):
                self.stats.throttled += 1
                self.gate.pause(event.wait)
                self.slots.throttled()
                self.stats.concurrency = self.slots.limit
            self._emit(ProgressKind.RETRIED, index, event.url, retry=event)

        return hook

    async def _submit_and_store(
        self, index: int, url: str, item: SinkItem, queued_at: float
    ) -> ItemResult:
        attempts = ambiguous = resubmits = 0
        posted_at: float | None = None
        cutout: Cutout | None = self.journal.pending_cutout(url) if self.journal else None
        hook = self._on_retry(index)
        while True:
            try:
                if cutout is None:
                    try:
                        cutout = await self.client.remove_background(
                            url, before_attempt=self._before_attempt, on_retry=(hook,)
                        )
                    except FreepikError as exc:
                        attempts += exc.attempts
                        ambiguous += exc.ambiguous_retries
                        raise
                    attempts += cutout.attempts
                    ambiguous += cutout.ambiguous_retries
                    posted_at = anyio.current_time()
                    if self.journal is not None:
                        self.journal.record_posted(index, cutout)
                    self._emit(ProgressKind.POSTED, index, url)
                store_item = attrs.evolve(item, cutout=cutout)

                async def store(chunks: AsyncIterator[bytes], it: SinkItem = store_item) -> str:
                    try:
                        return await self.sink.store(it, chunks)
                    except FreepikError:
                        raise  # a broken transfer: retried by download_with
                    except Exception as exc:
                        # A typed failure of this item (which stops the batch), not a crash.
                        raise SinkError(f"storing {it.name} failed: {exc!r}") from exc

                location = await self.client.download_with(
                    cutout, store, size=self.config.size, on_retry=(hook,)
                )
            except FreepikError as exc:
                if isinstance(exc, LinkExpiredError) and resubmits < self.config.resubmit_expired:
                    logger.warning("link for %s expired before download; submitting again", url)
                    resubmits += 1
                    self.stats.resubmits += 1
                    cutout = None
                    continue
                return self._failure(
                    index,
                    url,
                    exc,
                    attempts=attempts,
                    ambiguous=ambiguous,
                    resubmits=resubmits,
                    queued_at=queued_at,
                    posted_at=posted_at,
                )
            self.slots.succeeded()
            self.stats.concurrency = self.slots.limit
            return ItemResult(
                index=index,
                image_url=url,
                ok=True,
                location=location,
                cutout=cutout,
                attempts=attempts,
                ambiguous_retries=ambiguous,
                resubmits=resubmits,
                queued_at=queued_at,
                posted_at=posted_at,
                stored_at=anyio.current_time(),
            )

    def _stops_everything(self, exc: FreepikError) -> bool:
        if isinstance(exc, _STOPPING_ERRORS):
            return True
        # A 429 demanding a longer wait than we retry for is a temporary block:
        # every other request would be refused too.
        limit = self.client.retry_policy.max_retry_after
        return (
            isinstance(exc, RateLimitError)
            and exc.retry_after is not None
            and exc.retry_after > limit
        )

    def _failure(
        self,
        index: int,
        url: str,
        exc: FreepikError,
        *,
        queued_at: float,
        attempts: int = 0,
        ambiguous: int = 0,
        resubmits: int = 0,
        posted_at: float | None = None,
    ) -> ItemResult:
        if isinstance(exc, SkippedError) and exc.cause is not None:
            return self._stopped(index, url, queued_at)
        if self.stop_error is None and (
            self._stops_everything(exc)
            or (self.config.fail_fast and not isinstance(exc, SkippedError))
        ):
            self.stop_error = exc
            logger.error("stopping the batch: %s", exc)
        return ItemResult(
            index=index,
            image_url=url,
            ok=False,
            error=exc,
            attempts=attempts,
            ambiguous_retries=ambiguous,
            resubmits=resubmits,
            queued_at=queued_at,
            posted_at=posted_at,
        )
