"""Timeouts: a stalled server never hangs a batch past its configured timeouts."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import anyio
import httpx
import pytest

import freepik_bg
from freepik_bg.testing import Emulator, Fault, FaultRule

from ._servers import StallServer
from .conftest import KEY, TRANSPORTS, assert_outputs_valid

pytestmark = pytest.mark.anyio

ITEMS = 12
TIMEOUT = 0.5
RETRIES = 1
# Two attempts of 0.5 s each, all items in parallel, plus generous slack for CI.
BOUND = 2 * TIMEOUT * (1 + RETRIES) + 3.0


@TRANSPORTS
@pytest.mark.parametrize("mode", ["accept", "headers"])
async def test_stalled_api_ends_in_timeouts(
    tmp_path: Path, mode: Literal["accept", "headers"], http_backend: str
) -> None:
    """The API accepts and never answers, or sends headers and then stalls the body."""
    server = StallServer(mode)
    async with anyio.create_task_group() as tg:
        port = await tg.start(server.serve)
        base = f"http://127.0.0.1:{port}"
        urls = [f"https://img.example/{i}.jpg" for i in range(ITEMS)]
        # A generous connect timeout: on a loaded machine an accept can take longer than
        # the read timeout under test, and a connect that times out was never sent. The
        # pool too: httpx-aiohttp gives it to aiohttp as the connect (pool wait + connect).
        timeout = httpx.Timeout(TIMEOUT, connect=10.0, pool=10.0)
        async with freepik_bg.AsyncClient(
            KEY, base_url=base, timeout=timeout, max_retries=RETRIES, http_backend=http_backend
        ) as client:
            start = anyio.current_time()
            with anyio.fail_after(BOUND):
                report = await client.run_batch(
                    urls, tmp_path / "out", concurrency=ITEMS, rate=None
                )
            elapsed = anyio.current_time() - start
        tg.cancel_scope.cancel()
    assert not report.stored
    assert len(report.failed) == ITEMS
    for item in report.failed:
        assert type(item.error) is freepik_bg.APITimeoutError, repr(item.error)
        assert item.error.maybe_processed  # the request was sent: it may have been billed
        assert item.attempts == 1 + RETRIES
        assert item.ambiguous_retries == RETRIES
    assert elapsed >= TIMEOUT * (1 + RETRIES) * 0.9
    assert server.connections >= ITEMS  # every attempt really reached the server


@TRANSPORTS
async def test_stalled_download_ends_in_timeouts(tmp_path: Path, http_backend: str) -> None:
    """The POST works; the result link sends its headers and then stalls the body."""
    rules = [FaultRule("download", Fault.stall(60.0), 1.0)]
    retries: list[freepik_bg.RetryEvent] = []
    # The POSTs must not time out: on a loaded machine 12 at once can take longer than
    # 0.5 s from an emulator sharing the process, and the test is about the download.
    timeout = 3 * TIMEOUT
    async with Emulator(api_key=KEY, fast=True, fault_rules=rules) as emu:
        urls = [emu.image_url("ball-small.png") + f"?t={i}" for i in range(ITEMS)]
        async with freepik_bg.AsyncClient(
            KEY,
            base_url=emu.base_url,
            timeout=timeout,
            max_retries=RETRIES,
            on_retry=retries.append,
            http_backend=http_backend,
        ) as client:
            with anyio.fail_after(BOUND + 2 * timeout * (1 + RETRIES)):
                report = await client.run_batch(
                    urls, tmp_path / "out", concurrency=ITEMS, rate=None
                )
        stats = emu.stats
    assert len(report.failed) == ITEMS
    for item in report.failed:
        assert type(item.error) is freepik_bg.APITimeoutError, repr(item.error)
        assert "download of" in str(item.error)
        assert item.attempts == 1  # one POST: the download was retried, not the POST
    assert stats.count("post", 200) == ITEMS
    assert [e.operation for e in retries] == ["download"] * (ITEMS * RETRIES)
    if (tmp_path / "out").exists():
        assert not assert_outputs_valid(tmp_path / "out")  # nothing, not even a temp file
