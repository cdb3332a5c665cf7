"""A blocking entry point for scripts that do not run an event loop."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import anyio
import httpx

from ._batch import Dest, Urls
from ._client import AsyncClient
from ._config import BatchConfig
from ._models import BatchReport

__all__ = ["batch_client", "remove_backgrounds"]


def _running_loop() -> str | None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        return "asyncio"
    trio = sys.modules.get("trio")
    if trio is not None:
        try:
            trio.lowlevel.current_trio_token()
        except RuntimeError:
            pass
        else:
            return "trio"
    return None


def batch_client(config: BatchConfig, **client_options: Any) -> AsyncClient:
    """An `AsyncClient` sized for ``config``: one connection per item in flight."""
    return AsyncClient(max_connections=config.concurrency, **client_options)


def remove_backgrounds(
    urls: Urls,
    dest: Dest,
    config: BatchConfig | None = None,
    *,
    api_key: str | None = None,
    base_url: str | httpx.URL | None = None,
    timeout: float | httpx.Timeout | None = None,
    max_retries: int | None = None,
    retry_ambiguous: bool = True,
    backend: str = "asyncio",
    **options: Any,
) -> BatchReport:
    """Remove the backgrounds of ``urls`` into ``dest`` and return the report.

    The synchronous twin of `AsyncClient.run_batch`, for scripts: it starts
    an event loop, runs the batch, and closes everything. ``config`` and
    ``options`` are those of `AsyncClient.batch` (a `BatchConfig`, or its
    fields as keywords); the client keywords are those of `AsyncClient`;
    ``backend`` is the anyio backend to run on (``"asyncio"`` or ``"trio"``).

    Examples:
        >>> import freepik_bg
        >>> def main() -> None:
        ...     with open("urls.txt") as urls:
        ...         report = freepik_bg.remove_backgrounds(urls, "cutouts/", journal="run.jsonl")
        ...     print(report.summary())
    """
    batch = BatchConfig.build(config, options)
    running = _running_loop()
    if running is not None:
        raise RuntimeError(
            f"remove_backgrounds() blocks, so it cannot run inside a running {running} event "
            "loop: use `await client.run_batch(...)` on an AsyncClient instead."
        )

    async def main() -> BatchReport:
        async with batch_client(
            batch,
            api_key=api_key,
            base_url=base_url,
            timeout=timeout,
            max_retries=max_retries,
            retry_ambiguous=retry_ambiguous,
        ) as client:
            return await client.run_batch(urls, dest, batch)

    return anyio.run(main, backend=backend)
