"""The batch as a context manager: start the runner, hand out results, clean up.

`open_batch` is a plain ``@asynccontextmanager`` around a task group, like
trio's ``as_safe_channel``: an exception from the block, a progress hook or a
sink comes out as itself, never wrapped in an ``ExceptionGroup``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import NoReturn

import anyio
from anyio.abc import ObjectReceiveStream

from ._config import BatchConfig
from ._models import BatchReport, BatchStats, ItemResult
from ._runner import BatchClient, Runner
from ._sinks import DirectorySink, Sink

if sys.version_info < (3, 11):  # pragma: no cover - anyio installs the backport there
    from exceptiongroup import BaseExceptionGroup

__all__ = ["BatchResults", "collect_report", "open_batch"]

Dest = str | os.PathLike[str] | Sink


class BatchResults:
    """Async iterator of `ItemResult`, in completion order.

    Returned by ``client.batch(...)``; ``stats`` has live counters.

    Examples:
        >>> async def show(results: BatchResults) -> None:
        ...     async for item in results:
        ...         print(item.index, item.status, results.stats.in_flight)
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


def make_sink(dest: Dest) -> Sink:
    """A `DirectorySink` for a path, the sink itself otherwise."""
    if isinstance(dest, str | os.PathLike):
        return DirectorySink(Path(dest))
    if not isinstance(dest, Sink):
        raise TypeError("dest must be a directory path or a Sink (with exists() and store())")
    return dest


def _raise_single(group: BaseExceptionGroup[BaseException]) -> NoReturn:
    """Raise the group's only leaf exception as itself; any other group as it is."""
    leaves: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        current = pending.pop()
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
        else:
            leaves.append(current)
    if len(leaves) != 1:
        raise group
    single = leaves[0]
    context = single.__context__
    try:
        raise single
    finally:
        # Raising here would chain the group as its context: keep the original one.
        single.__context__ = context
        del single


@asynccontextmanager
async def open_batch(
    client: BatchClient,
    urls: Iterable[str] | AsyncIterable[str],
    dest: Dest,
    config: BatchConfig,
) -> AsyncIterator[BatchResults]:
    """Run a batch of ``urls`` into ``dest`` under ``config``; see `AsyncClient.batch`."""
    if isinstance(urls, str | bytes):
        raise TypeError("urls must be an iterable of URLs, not a single string")
    runner = Runner.create(client, make_sink(dest), config)
    send, receive = anyio.create_memory_object_stream[ItemResult](config.concurrency)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(runner.run, urls, send)
            try:
                yield BatchResults(receive, runner.stats)
            finally:
                # Leaving the block early (break, exception) cancels what is in flight.
                tg.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        _raise_single(group)
    finally:
        receive.close()
        runner.close()


async def collect_report(results: BatchResults) -> BatchReport:
    """Drain ``results`` into a `BatchReport`."""
    stored: list[ItemResult] = []
    failed: list[ItemResult] = []
    skipped: list[ItemResult] = []
    async for item in results:
        if item.skipped:
            skipped.append(item)
        elif item.ok:
            stored.append(item)
        else:
            failed.append(item)
    return BatchReport(
        stored=tuple(stored),
        failed=tuple(failed),
        skipped=tuple(skipped),
        elapsed=anyio.current_time() - results.started_at,
        posts=results.stats.posts,
    )
