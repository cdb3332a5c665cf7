"""A sink that cannot store (disk full, no permission, a failed upload)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest

import freepik_bg
from freepik_bg import SinkItem
from freepik_bg.testing import Emulator

from .conftest import KEY

pytestmark = pytest.mark.anyio


class DiskFullAt:
    """Stores in memory, but raises ENOSPC for one item."""

    def __init__(self, failing_index: int) -> None:
        self.failing_index = failing_index
        self.stored: dict[str, bytes] = {}

    async def exists(self, item: SinkItem) -> str | None:
        return None

    async def store(self, item: SinkItem, chunks: AsyncIterator[bytes]) -> str:
        data = b"".join([chunk async for chunk in chunks])
        if item.index == self.failing_index:
            raise OSError(28, "No space left on device")
        self.stored[item.name] = data
        return item.name


async def test_sink_failure_is_a_typed_error_not_a_crash() -> None:
    """That item fails with SinkError; the batch stops, the rest failing unsent.

    Regression test: an exception from ``Sink.store`` used to escape the batch's
    task group: run_batch raised a nested ExceptionGroup, every item in flight
    was cancelled (their POSTs paid for) and no ItemResult said what happened.
    The batch stops like on a 402: every later item would pay for a result it
    cannot store.
    """
    sink = DiskFullAt(3)
    async with Emulator(api_key=KEY, fast=True) as emu:
        urls = [emu.image_url("ball-small.png") + f"?d={i}" for i in range(10)]
        async with freepik_bg.AsyncClient(KEY, base_url=emu.base_url) as client:
            with anyio.fail_after(20):
                report = await client.run_batch(urls, sink, concurrency=1, rate=None)
        posts = emu.stats.posts
    assert sorted(r.index for r in report.stored) == [0, 1, 2]
    failed = {r.index: r for r in report.failed}
    assert sorted(failed) == list(range(3, 10))
    assert isinstance(failed[3].error, freepik_bg.SinkError)
    assert "No space left on device" in str(failed[3].error)
    assert isinstance(failed[3].error.__cause__, OSError)
    assert all(isinstance(r.error, freepik_bg.FreepikError) for r in report.failed)
    assert posts == 4  # nothing sent after the failure
    assert len(sink.stored) == 3
