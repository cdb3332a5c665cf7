"""Between a validated download and the sink: the batch's transforms, names and kept PNGs.

A transform is CPU work on a whole image (a 25 MP flatten and encode takes
about a second), so it runs in a worker thread, a few at a time per batch: the
event loop keeps serving every other item, and memory stays bounded however
many downloads finish at once. Downloads waiting for a worker wait in a
spooled temporary file (in memory while small, on disk past a few MB, written
and read from worker threads), not in memory.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import PurePosixPath
from typing import IO

import anyio
import attrs

from ._sinks import Sink, SinkItem
from ._transform import apply, require_pillow
from ._transform_options import TransformOptions

__all__ = ["TRANSFORM_WORKERS", "OutputStage"]

TRANSFORM_WORKERS = max(1, min(4, os.cpu_count() or 1))
"""Transforms at once per batch: one per core (CPU-bound; Pillow releases the GIL), at most 4."""
_SPOOL_BYTES = 4 * 1024 * 1024
_READ_BYTES = 1024 * 1024
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@attrs.define(slots=True)
class OutputStage:
    """What happens to each downloaded cutout before the sink stores it."""

    options: TransformOptions
    keep_png: bool = False
    limiter: anyio.CapacityLimiter = attrs.field(
        factory=lambda: anyio.CapacityLimiter(TRANSFORM_WORKERS)
    )

    @classmethod
    def create(cls, options: TransformOptions, *, keep_png: bool = False) -> OutputStage:
        """The stage for ``options``; a clear error now, before any POST, if Pillow is missing."""
        if not options.identity:
            require_pillow()
        return cls(options, keep_png=keep_png)

    def name(self, name: str) -> str:
        """The output's name: ``name`` (the service's file name) with the format's extension."""
        if self.options.identity:
            return name
        return str(PurePosixPath(name).with_suffix(self.options.suffix))

    def journal_name(self, stem: str | None) -> str | None:
        """What the journal records an output under: with a transform, its extension too.

        So that a rerun asking for another format does not take the files of the
        first one for done (``shoe.png`` stored does not make ``shoe.jpg`` stored).
        """
        return stem if self.options.identity else f"{stem or ''}{self.options.suffix}"

    async def store(self, sink: Sink, item: SinkItem, chunks: AsyncIterator[bytes]) -> str:
        """Transform the validated ``chunks`` and store the result as ``item``.

        A broken download raises from the iteration, before anything is stored,
        so the caller retries it; a failed transform raises `TransformError`.
        """
        if self.options.identity:
            return await sink.store(item, chunks)
        with tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES) as spool:
            received = 0
            async for chunk in chunks:
                received += len(chunk)
                if received <= _SPOOL_BYTES:
                    spool.write(chunk)  # still in memory: no file system call
                else:  # on disk (the first such write rolls over): never on the event loop
                    await anyio.to_thread.run_sync(spool.write, chunk)
            if self.keep_png:
                await self._keep(sink, item, spool)
            spool.seek(0)
            data = await anyio.to_thread.run_sync(apply, spool, self.options, limiter=self.limiter)
        # The worker thread cannot be interrupted: an abort that came meanwhile wins here.
        await anyio.lowlevel.checkpoint_if_cancelled()
        return await sink.store(item, _one(data))

    async def _keep(self, sink: Sink, item: SinkItem, spool: IO[bytes]) -> None:
        # Stored first, so that a transform that fails leaves the paid PNG in place.
        spool.seek(0)
        head = await anyio.to_thread.run_sync(spool.read, len(_PNG_SIGNATURE))
        suffix = ".png" if head == _PNG_SIGNATURE else ".jpg"
        kept = PurePosixPath(item.name).with_suffix(suffix)
        if str(kept) == item.name:  # a PNG output: keep the untouched one under another name
            kept = kept.with_suffix(".untouched" + suffix)
        await sink.store(attrs.evolve(item, name=str(kept)), _replay(spool))


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _replay(spool: IO[bytes]) -> AsyncIterator[bytes]:
    spool.seek(0)
    while chunk := await anyio.to_thread.run_sync(spool.read, _READ_BYTES):
        yield chunk
