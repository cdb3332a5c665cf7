"""`AsyncClient`'s batch methods: the keywords of `BatchConfig`, one per field.

A mixin, so that the client's module stays about requests and downloads; the
runner drives the client only through the `BatchClient` protocol.
"""

from __future__ import annotations

import os
from contextlib import AbstractAsyncContextManager
from typing import Any, cast

import attrs

from ._batch import BatchResults, Dest, Urls, collect_report, open_batch
from ._config import BatchConfig
from ._journal import Journal
from ._lifecycle import BatchClient
from ._models import BatchReport, ProgressHook, Size
from ._transform_options import OutputFormat

__all__ = ["BatchMethods"]

# The defaults of `batch`'s keywords are read from here, so they live in one place.
_BATCH = BatchConfig()


class BatchMethods:
    """`AsyncClient.batch` and `AsyncClient.run_batch`."""

    def batch(
        self,
        urls: Urls,
        dest: Dest,
        config: BatchConfig | None = None,
        *,
        concurrency: int = _BATCH.concurrency,
        rate: float | None = _BATCH.rate,
        burst: int = _BATCH.burst,
        size: Size | tuple[Size, ...] = _BATCH.size,
        journal: str | os.PathLike[str] | Journal | None = _BATCH.journal,
        overwrite: bool = _BATCH.overwrite,
        fail_fast: bool = _BATCH.fail_fast,
        resubmit_expired: int = _BATCH.resubmit_expired,
        repay_missing_renditions: bool = _BATCH.repay_missing_renditions,
        stage: str | None = _BATCH.stage,
        keep_staged: bool = _BATCH.keep_staged,
        progress: ProgressHook | None = _BATCH.progress,
        drain_timeout: float = _BATCH.drain_timeout,
        output_format: OutputFormat = _BATCH.output_format,
        quality: int = _BATCH.quality,
        background: str | None = _BATCH.background,
        trim: bool = _BATCH.trim,
        margin: int | str = _BATCH.margin,
        max_side: int | None = _BATCH.max_side,
        keep_png: bool = _BATCH.keep_png,
    ) -> AbstractAsyncContextManager[BatchResults]:
        """Fan out many URLs; yield an `ItemResult` for each as it finishes.

        Each item is submitted and then downloaded at once by the same task,
        so no result waits behind new submissions while its link ticks. The
        keywords are the fields of `BatchConfig` (see there); pass
        ``config`` instead to reuse one: keywords set to something other than
        their default override it.

        Args:
            urls: any iterable or async iterable of URLs, pulled lazily (an
                endless generator works; memory stays flat). A `pathlib.Path`
                item is a local image, uploaded through ``stage``.
            dest: a directory (one safe, deterministic file name per URL,
                written atomically) or a `Sink`.
            config: a `BatchConfig` to start from.

        However the block is left (the end, ``break``, an exception, a
        cancelled scope), nothing new is sent and every POST already sent is
        finished, stored and journaled within ``drain_timeout``;
        ``results.abort()`` abandons them instead. An exception raised in the
        block comes out as itself.

        Examples:
            >>> from freepik_bg import AsyncClient
            >>> async def main(client: AsyncClient, urls: list[str]) -> None:
            ...     async with client.batch(urls, "out/", concurrency=16) as results:
            ...         async for item in results:
            ...             print(item.index, item.status, item.location or item.error)
        """
        # The keywords are named exactly as BatchConfig's fields (a test checks it).
        given = locals()
        # Only keywords that differ from the defaults override ``config``.
        changes = {
            name: given[name]
            for name in attrs.fields_dict(BatchConfig)
            if given[name] != getattr(_BATCH, name)
        }
        return open_batch(cast(BatchClient, self), urls, dest, BatchConfig.build(config, changes))

    async def run_batch(
        self,
        urls: Urls,
        dest: Dest,
        config: BatchConfig | None = None,
        **options: Any,
    ) -> BatchReport:
        """Run a whole batch and return its report; takes the options of `batch`.

        Examples:
            >>> from freepik_bg import AsyncClient
            >>> async def main(client: AsyncClient, urls: list[str]) -> None:
            ...     report = await client.run_batch(urls, "out/", concurrency=16)
            ...     print(report.summary())
        """
        batch = open_batch(cast(BatchClient, self), urls, dest, BatchConfig.build(config, options))
        async with batch as results:
            return await collect_report(results)
