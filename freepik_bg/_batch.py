"""The batch as a context manager: start the runner, hand out results, clean up.

`open_batch` is a plain ``@asynccontextmanager`` around a task group, like
trio's ``as_safe_channel``: an exception from the block, a progress or retry hook or
the input comes out as itself, never wrapped in an ``ExceptionGroup`` (a sink's is
its item's `SinkError`, which stops the batch).
"""

from __future__ import annotations

import copy
import io
import os
import re
import sys
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, Union

import anyio
from anyio.abc import ObjectReceiveStream

from ._claims import Claims
from ._config import BatchConfig
from ._errors import ConfigurationError, FreepikError
from ._input import BadLine, InputLine, read_entries
from ._lifecycle import BatchClient
from ._models import BatchReport, BatchStats, ItemResult
from ._runner import Runner
from ._runner_create import create_runner
from ._sinks import DirectorySink, Sink
from ._targets import LocalImage
from ._urls import STORAGE_SCHEMES, is_storage_url

if TYPE_CHECKING:
    from obstore.store import ObjectStore

if sys.version_info < (3, 11):  # pragma: no cover - anyio installs the backport there
    from exceptiongroup import BaseExceptionGroup

__all__ = ["BatchResults", "collect_report", "make_sink", "open_batch", "raise_single"]

# Union, not |: ObjectStore is only imported for type checkers (obstore is optional).
Dest = Union[str, os.PathLike[str], Sink, "ObjectStore"]
"""A folder, a storage URL, a `Sink`, or an obstore store configured in code."""
Entry = str | InputLine | BadLine | os.PathLike[str] | LocalImage
Urls = Iterable[Entry] | AsyncIterable[Entry]
"""URLs (or parsed input lines); a file object is read by the shared input parser."""


class BatchResults:
    """Async iterator of `ItemResult`, in completion order.

    Returned by ``client.batch(...)``; ``stats`` has live counters.

    Examples:
        >>> async def show(results: BatchResults) -> None:
        ...     async for item in results:
        ...         print(item.index, item.status, results.stats.in_flight)
    """

    def __init__(self, receive: ObjectReceiveStream[ItemResult], runner: Runner) -> None:
        self._receive = receive
        self._runner = runner
        self.stats: BatchStats = runner.stats
        self.started_at = anyio.current_time()

    @property
    def stopped_by(self) -> FreepikError | None:
        """The error that stopped the batch early (a refused key, ...), if one did."""
        return self._runner.breaker.error

    @property
    def stop_reason(self) -> str | None:
        """Why the batch stopped early, naming what to check; ``None`` if it did not."""
        return self._runner.breaker.reason

    def stop(self) -> None:
        """Send nothing more; finish, store and journal what was already sent.

        The iteration then ends once those items are in (within the batch's
        ``drain_timeout``). Calling it again does nothing more; use `abort`.
        """
        self._runner.stop(drain=True)

    def abort(self) -> None:
        """Stop at once, abandoning POSTs in flight (their answers, if any, are journaled)."""
        self._runner.stop(drain=False)

    def __aiter__(self) -> BatchResults:
        return self

    async def __anext__(self) -> ItemResult:
        try:
            return await self._receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            raise StopAsyncIteration from None


_URL_LIKE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def make_sink(dest: Dest, *, overwrite: bool = False) -> Sink:
    """The sink for ``dest``: object storage for a storage URL, a folder for a path.

    ``s3://``, ``gs://``, ``az://``, ``file://`` and ``memory://`` URLs need the
    ``storage`` extra (obstore); any other URL is refused, never taken for a
    local folder named ``s3:``. An obstore store (``S3Store(...)``) writes at
    its root; for a prefix, pass ``ObjectStoreSink(store, prefix="cutouts/")``.
    An empty string is refused, never taken for the current directory.

    Raises:
        ConfigurationError: ``dest`` is empty, or a URL that cannot hold outputs.
    """
    if isinstance(dest, str) and not dest.strip():
        # Typically an unset setting (os.environ.get("CUTOUT_DIR", "")): writing into
        # whatever the current directory is would scatter paid outputs where no one looks.
        raise ConfigurationError(
            f"dest {dest!r} is empty: give an output directory (use '.' for the current "
            "one), a storage URL or a Sink"
        )
    if isinstance(dest, str) and _URL_LIKE.match(dest):
        if is_storage_url(dest):
            from ._storage import sink_from_url  # obstore is optional

            return sink_from_url(dest, overwrite=overwrite)
        schemes = ", ".join(f"{scheme}://" for scheme in sorted(STORAGE_SCHEMES))
        raise ConfigurationError(
            f"dest {dest!r} is a URL of a kind that cannot hold outputs: use a local "
            f"directory, a Sink, or object storage ({schemes})"
        )
    if isinstance(dest, str | os.PathLike):
        return DirectorySink(Path(dest), overwrite=overwrite)
    if isinstance(dest, DirectorySink) and overwrite and not dest.overwrite:
        # A batch asked to replace: a folder sink made before it does so too, as a path
        # would (its copy: the caller's object is not changed).
        dest = copy.copy(dest)
        dest.overwrite = True
        return dest
    if type(dest).__module__.startswith("obstore"):
        from ._storage import ObjectStoreSink  # a store configured in code: S3Store(...)

        return ObjectStoreSink(dest, overwrite=overwrite)  # type: ignore[arg-type]
    if not isinstance(dest, Sink):
        raise TypeError("dest must be a directory path, a storage URL, an obstore store or a Sink")
    return dest


def _entries(urls: Iterable[Any] | AsyncIterable[Any]) -> Iterable[Any] | AsyncIterable[Any]:
    """A file object is read by the shared parser (comments, blank lines, bad bytes)."""
    if isinstance(urls, io.IOBase):
        stream = urls.buffer if isinstance(urls, io.TextIOWrapper) else urls
        return read_entries(stream)  # type: ignore[arg-type]
    return urls


def raise_single(group: BaseExceptionGroup[BaseException]) -> NoReturn:
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
    urls: Urls,
    dest: Dest,
    config: BatchConfig,
    claims: Claims | None = None,
) -> AsyncIterator[BatchResults]:
    """Run a batch of ``urls`` into ``dest`` under ``config``; see `AsyncClient.batch`.

    ``claims``: shares POSTs with batches running elsewhere (a Dask computation's
    other partitions), see `freepik_bg._claims`.
    """
    if isinstance(urls, str | bytes):
        raise TypeError("urls must be an iterable of URLs, not a single string")
    sink = make_sink(dest, overwrite=config.overwrite)
    check = getattr(sink, "check", None)
    if check is not None:
        await check()  # before the first POST: a destination that cannot store costs nothing
    runner = create_runner(client, sink, config, claims)
    try:
        await runner.staging.check()  # and the staging bucket, if local files go through one
    except BaseException:
        runner.close()
        raise
    send, receive = anyio.create_memory_object_stream[ItemResult](config.concurrency)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(runner.run, _entries(urls), send)
            try:
                yield BatchResults(receive, runner)
            finally:
                # However the block is left (break, an exception, a cancelled scope),
                # what was sent is finished and stored; nothing new is sent.
                runner.stop(drain=True)
                receive.close()
    except BaseExceptionGroup as group:
        raise_single(group)
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
        stopped_by=results.stopped_by,
        stop_reason=results.stop_reason,
    )
