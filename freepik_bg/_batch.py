"""The batch runner: many URLs in, cutouts stored the moment they exist.

Each item is one task that POSTs and then downloads at once, so a result
never waits behind new submissions and its 5-minute link never lapses in a
queue. Input is pulled lazily, one item per free concurrency slot, so a
generator of millions (or an endless one) runs in flat memory.
"""

from __future__ import annotations

import copy
import enum
import logging
import os
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Callable, Iterable
from contextlib import AbstractAsyncContextManager, aclosing
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, TypedDict

import anyio
import attrs
from anyio.abc import ObjectReceiveStream, ObjectSendStream, TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream

from ._config import validate_image_url
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
from ._models import SIZES, BatchReport, Cutout, ItemResult, Size
from ._ratelimit import AdaptiveConcurrency, RateGate
from ._retries import RetryEvent
from ._sinks import DirectorySink, Sink, SinkItem, output_name

if TYPE_CHECKING:
    from ._client import AsyncClient

__all__ = [
    "DEFAULT_BURST",
    "DEFAULT_CONCURRENCY",
    "DEFAULT_RATE",
    "BatchOptions",
    "BatchResults",
    "BatchStats",
    "ProgressEvent",
    "ProgressHook",
    "ProgressKind",
    "collect_report",
    "open_batch",
]

logger = logging.getLogger("freepik_bg")

DEFAULT_CONCURRENCY = 32
"""Enough in flight to keep 10 requests/s going when each takes a few seconds."""
DEFAULT_RATE = 10.0
"""Freepik's documented sustained limit per IP and key: 10 requests/s over 2 minutes."""
DEFAULT_BURST = 50
"""Freepik allows bursts up to 50 requests/s."""

# These mean every further request would fail the same way.
# A failing sink (disk full, no permission) would fail every later item too,
# each after paying for its result: stop, as for a refused key or no credits.
_STOPPING_ERRORS = (
    AuthenticationError,
    InsufficientCreditsError,
    PermissionDeniedError,
    SinkError,
)


class ProgressKind(enum.Enum):
    """What a :class:`ProgressEvent` reports."""

    SUBMITTED = "submitted"
    """An item was pulled from the input and started."""
    POSTED = "posted"
    """The service answered with links (a credit was spent)."""
    RETRIED = "retried"
    """A request failed and will be retried (``retry`` says why)."""
    DOWNLOADED = "downloaded"
    """An item is stored (``result`` is set)."""
    FAILED = "failed"
    """An item failed for good (``result`` is set)."""
    SKIPPED = "skipped"
    """An item needed no request (``result`` is set)."""


@attrs.frozen(slots=True)
class ProgressEvent:
    """Passed to a batch's ``progress`` hook as things happen."""

    kind: ProgressKind
    index: int
    image_url: str
    result: ItemResult | None = None
    retry: RetryEvent | None = None


ProgressHook = Callable[[ProgressEvent], object]


class BatchOptions(TypedDict, total=False):
    """The keyword options of :meth:`AsyncClient.batch`, for functions that pass them on."""

    concurrency: int
    rate: float | None
    burst: int
    size: Size
    journal: str | os.PathLike[str] | Journal | None
    overwrite: bool
    fail_fast: bool
    resubmit_expired: int
    progress: ProgressHook | None


@attrs.define(slots=True)
class BatchStats:
    """Live counters of a running batch (read them from a progress hook or a UI)."""

    submitted: int = 0
    succeeded: int = 0
    failed: int = 0
    skipped: int = 0
    posts: int = 0
    retries: int = 0
    ambiguous_retries: int = 0
    resubmits: int = 0
    throttled: int = 0
    in_flight: int = 0
    concurrency: int = 0

    @property
    def finished(self) -> int:
        """Items that reached a final state."""
        return self.succeeded + self.failed + self.skipped


class BatchResults:
    """Async iterator of :class:`ItemResult`, in completion order.

    Returned by ``client.batch(...)``; ``stats`` has live counters.
    """

    def __init__(self, receive: ObjectReceiveStream[ItemResult], stats: BatchStats) -> None:
        self._receive = receive
        self.stats = stats
        self.started_at = anyio.current_time()

    def __aiter__(self) -> BatchResults:
        return self

    async def __anext__(self) -> ItemResult:
        try:
            return await self._receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            raise StopAsyncIteration from None


async def _iterate(urls: Iterable[str] | AsyncIterable[str]) -> AsyncGenerator[str, None]:
    if isinstance(urls, AsyncIterable):
        async for url in urls:
            yield url
    else:
        for url in urls:
            yield url


@attrs.define(slots=True, kw_only=True)
class _Runner:
    client: AsyncClient
    sink: Sink
    size: Size
    overwrite: bool
    fail_fast: bool
    resubmit_expired: int
    journal: Journal | None
    owns_journal: bool
    progress: ProgressHook | None
    gate: RateGate
    slots: AdaptiveConcurrency
    stats: BatchStats
    stop_error: FreepikError | None = None

    def _emit(
        self,
        kind: ProgressKind,
        index: int,
        url: str,
        *,
        result: ItemResult | None = None,
        retry: RetryEvent | None = None,
    ) -> None:
        if self.progress is not None:
            self.progress(ProgressEvent(kind, index, url, result=result, retry=retry))

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
                self.stats.submitted += 1
                tg.start_soon(self._item, index, url, owner, send)
                index += 1

    async def _item(
        self, index: int, url: object, owner: object, send: ObjectSendStream[ItemResult]
    ) -> None:
        self.stats.in_flight += 1
        try:
            result = await self._process(index, url)
            if self.journal is not None:
                self.journal.record(result, size=self.size)
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
            self.stats.succeeded += 1
            kind = ProgressKind.DOWNLOADED
        else:
            self.stats.failed += 1
            kind = ProgressKind.FAILED
        self._emit(kind, result.index, result.image_url, result=result)

    async def _process(self, index: int, raw_url: object) -> ItemResult:
        queued_at = anyio.current_time()
        url = raw_url if isinstance(raw_url, str) else repr(raw_url)
        self._emit(ProgressKind.SUBMITTED, index, url)
        if self.stop_error is not None:
            return self._stopped(index, url, queued_at)
        try:
            url = validate_image_url(raw_url)
        except FreepikError as exc:
            return self._failure(index, url, exc, queued_at=queued_at)

        item = SinkItem(
            index=index, image_url=url, name=output_name(url, self.size), size=self.size
        )
        if not self.overwrite:
            done = self.journal is not None and self.journal.is_done(url, self.size)
            # The journal is enough: no need to ask the sink (a request, for object storage).
            location = None if done else await self.sink.exists(item)
            if done or location is not None:
                return ItemResult(
                    index=index,
                    image_url=url,
                    ok=True,
                    path=location or self._location(item),
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
                        cutout = await self.client._submit(
                            url, before_attempt=self._before_attempt, hooks=(hook,)
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
                    cutout, store, size=self.size, hooks=(hook,)
                )
            except FreepikError as exc:
                if isinstance(exc, LinkExpiredError) and resubmits < self.resubmit_expired:
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
                path=location,
                cutout=cutout,
                attempts=attempts,
                ambiguous_retries=ambiguous,
                resubmits=resubmits,
                queued_at=queued_at,
                posted_at=posted_at,
                downloaded_at=anyio.current_time(),
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
            self._stops_everything(exc) or (self.fail_fast and not isinstance(exc, SkippedError))
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


def _make_sink(dest: str | os.PathLike[str] | Sink) -> Sink:
    if isinstance(dest, str | os.PathLike):
        return DirectorySink(Path(dest))
    if not isinstance(dest, Sink):
        raise TypeError("dest must be a directory path or a Sink (with exists() and store())")
    return dest


class _BatchContext:
    """The async context manager behind :meth:`AsyncClient.batch`.

    A class rather than a generator-based context manager, so that no
    ``yield`` ever sits inside the task group: entering starts the runner in
    a task group, leaving cancels whatever is still in flight and closes it.
    """

    def __init__(self, runner: _Runner, urls: Iterable[str] | AsyncIterable[str], buffer: int):
        self._runner = runner
        self._urls = urls
        self._buffer = buffer
        self._task_group: TaskGroup | None = None
        self._receive: MemoryObjectReceiveStream[ItemResult] | None = None

    async def __aenter__(self) -> BatchResults:
        if self._task_group is not None:
            raise RuntimeError("a batch can only be entered once")
        send, self._receive = anyio.create_memory_object_stream[ItemResult](self._buffer)
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        self._task_group.start_soon(self._runner.run, self._urls, send)
        return BatchResults(self._receive, self._runner.stats)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._task_group is not None
        assert self._receive is not None
        # Leaving the block early (break, exception) cancels what is in flight.
        self._task_group.cancel_scope.cancel()
        try:
            return await self._task_group.__aexit__(exc_type, exc, tb)
        finally:
            self._receive.close()
            if self._runner.owns_journal and self._runner.journal is not None:
                self._runner.journal.close()


def open_batch(
    client: AsyncClient,
    urls: Iterable[str] | AsyncIterable[str],
    dest: str | os.PathLike[str] | Sink,
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    rate: float | None = DEFAULT_RATE,
    burst: int = DEFAULT_BURST,
    size: Size = "high_resolution",
    journal: str | os.PathLike[str] | Journal | None = None,
    overwrite: bool = False,
    fail_fast: bool = False,
    resubmit_expired: int = 1,
    progress: ProgressHook | None = None,
) -> AbstractAsyncContextManager[BatchResults]:
    """Check the options and build the batch. See :meth:`AsyncClient.batch`."""
    if isinstance(urls, str | bytes):
        raise TypeError("urls must be an iterable of URLs, not a single string")
    if size not in SIZES:
        raise ValueError(f"size must be one of {', '.join(SIZES)}, got {size!r}")
    if resubmit_expired < 0:
        raise ValueError("resubmit_expired must be >= 0")
    sink = _make_sink(dest)
    gate = RateGate(rate, burst)
    slots = AdaptiveConcurrency(concurrency)
    owns_journal = journal is not None and not isinstance(journal, Journal)
    runner = _Runner(
        client=client,
        sink=sink,
        size=size,
        overwrite=overwrite,
        fail_fast=fail_fast,
        resubmit_expired=resubmit_expired,
        journal=journal if isinstance(journal, Journal) or journal is None else Journal(journal),
        owns_journal=owns_journal,
        progress=progress,
        gate=gate,
        slots=slots,
        stats=BatchStats(concurrency=concurrency),
    )
    return _BatchContext(runner, urls, buffer=concurrency)


async def collect_report(results: BatchResults) -> BatchReport:
    """Drain ``results`` into a :class:`BatchReport`."""
    succeeded: list[ItemResult] = []
    failed: list[ItemResult] = []
    skipped: list[ItemResult] = []
    async for item in results:
        if item.skipped:
            skipped.append(item)
        elif item.ok:
            succeeded.append(item)
        else:
            failed.append(item)
    return BatchReport(
        succeeded=tuple(succeeded),
        failed=tuple(failed),
        skipped=tuple(skipped),
        elapsed=anyio.current_time() - results.started_at,
        posts=results.stats.posts,
    )
