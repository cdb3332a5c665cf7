"""A blocking entry point for scripts that do not run an event loop."""

from __future__ import annotations

import os
from collections.abc import AsyncIterable, Iterable
from functools import partial

import anyio
import httpx

from ._batch import ProgressHook
from ._client import AsyncClient
from ._journal import Journal
from ._models import BatchReport, Size
from ._sinks import Sink

__all__ = ["remove_backgrounds"]


def remove_backgrounds(
    urls: Iterable[str] | AsyncIterable[str],
    dest: str | os.PathLike[str] | Sink,
    *,
    api_key: str | None = None,
    base_url: str | httpx.URL | None = None,
    timeout: float | httpx.Timeout | None = None,
    max_retries: int | None = None,
    retry_ambiguous: bool = True,
    concurrency: int = 32,
    rate: float | None = 10.0,
    burst: int = 50,
    size: Size = "high_resolution",
    journal: str | os.PathLike[str] | Journal | None = None,
    overwrite: bool = False,
    fail_fast: bool = False,
    resubmit_expired: int = 1,
    progress: ProgressHook | None = None,
    backend: str = "asyncio",
) -> BatchReport:
    """Remove the backgrounds of ``urls`` into ``dest`` and return the report.

    The synchronous twin of :meth:`AsyncClient.run_batch`, for scripts: it
    starts an event loop, runs the batch, and closes everything. The options
    are those of :class:`AsyncClient` and :meth:`AsyncClient.batch`.

    Example:
        >>> import freepik_bg
        >>> report = freepik_bg.remove_backgrounds(  # doctest: +SKIP
        ...     open("urls.txt"), "cutouts/", journal="run.jsonl"
        ... )
        >>> print(report.summary())  # doctest: +SKIP
    """

    async def main() -> BatchReport:
        async with AsyncClient(
            api_key,
            base_url=base_url,
            timeout=timeout,
            max_retries=max_retries,
            retry_ambiguous=retry_ambiguous,
            max_connections=max(concurrency, 1),
        ) as client:
            return await client.run_batch(
                urls,
                dest,
                concurrency=concurrency,
                rate=rate,
                burst=burst,
                size=size,
                journal=journal,
                overwrite=overwrite,
                fail_fast=fail_fast,
                resubmit_expired=resubmit_expired,
                progress=progress,
            )

    return anyio.run(partial(main), backend=backend)
