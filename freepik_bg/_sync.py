"""A blocking entry point for scripts that do not run an event loop."""

from __future__ import annotations

import os
from collections.abc import AsyncIterable, Iterable
from functools import partial
from typing import TYPE_CHECKING

import anyio
import httpx

from ._batch import DEFAULT_CONCURRENCY, BatchOptions
from ._client import AsyncClient
from ._models import BatchReport
from ._sinks import Sink

if TYPE_CHECKING:
    from typing_extensions import Unpack

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
    backend: str = "asyncio",
    **options: Unpack[BatchOptions],
) -> BatchReport:
    """Remove the backgrounds of ``urls`` into ``dest`` and return the report.

    The synchronous twin of :meth:`AsyncClient.run_batch`, for scripts: it
    starts an event loop, runs the batch, and closes everything. The options
    are those of :class:`AsyncClient` and :meth:`AsyncClient.batch`; ``backend``
    is the anyio backend to run on (``"asyncio"`` or ``"trio"``).

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
            # One connection per item in flight, so no item waits for the pool.
            max_connections=options.get("concurrency", DEFAULT_CONCURRENCY),
        ) as client:
            return await client.run_batch(urls, dest, **options)

    return anyio.run(partial(main), backend=backend)
