"""Scenario "slowdisk": file writes must not block the event loop, even on a slow disk.

A 32-way SDK batch writes real files with `DirectorySink` while a probe task measures
event-loop lag: the delay of a 10 ms periodic timer past its due time. The slow disk
is simulated in this process: every `os.replace` (one per file: the atomic rename)
first sleeps 20 ms, blocking the thread that calls it, as a slow or network mount's
metadata write does.

Sides, interleaved round by round:

- ``fast``: `DirectorySink` (the SDK's write path) on the real disk;
- ``slow``: the same on the slow disk;
- ``slow on-loop``: the write path before this scenario existed (temp file, writes and
  rename on the event loop), on the slow disk;
- ``slow anyio.Path``: `anyio.open_file` and `anyio.Path`, one worker-thread hop per
  file operation and per chunk, on the slow disk.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio

from benchmarks._common import (
    Comparison,
    Log,
    RunStats,
    ScenarioResult,
    Settings,
    alternate,
    emulator,
    percentile,
    quiet,
    summarize,
    urls,
    warm_up,
)
from benchmarks._sdk import sdk_batch
from freepik_bg import DirectorySink, SinkItem
from freepik_bg.testing import Emulator

CONCURRENCY = 32
PACED_RATE = 60.0
"""POSTs/s of the lag runs: a loop with time to spare, so that lag shows blocking, not
this 2-core box's CPU running out (unpaced, both sides saturate it)."""
TICK = 0.010
SLOW_SECONDS = 0.020
SIDES = ("fast", "slow", "slow on-loop", "slow anyio.Path")


@contextlib.contextmanager
def slow_disk(seconds: float = SLOW_SECONDS) -> Iterator[None]:
    """Every `os.replace` in this process takes `seconds` longer, in the calling thread."""
    real = os.replace

    def replace(src: Any, dst: Any, **kwargs: Any) -> None:
        time.sleep(seconds)
        real(src, dst, **kwargs)

    os.replace = replace
    try:
        yield
    finally:
        os.replace = real


class OnLoopSink(DirectorySink):
    """The write path as it was: temp file, writes and rename on the event loop."""

    async def store(self, item: SinkItem, chunks: AsyncIterator[bytes]) -> str:
        path = self.path_for(item)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                async for chunk in chunks:
                    fh.write(chunk)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
        return str(path)


class AnyioPathSink(DirectorySink):
    """`anyio.open_file` / `anyio.Path`: a worker-thread hop per operation and chunk."""

    async def store(self, item: SinkItem, chunks: AsyncIterator[bytes]) -> str:
        path = self.path_for(item)
        tmp = anyio.Path(path.parent / f".{path.name}.{id(chunks)}.part")
        try:
            async with await anyio.open_file(tmp, "xb") as fh:
                async for chunk in chunks:
                    await fh.write(chunk)
            await tmp.replace(path)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await tmp.unlink(missing_ok=True)
            raise
        return str(path)


async def _batch_with_probe(
    base_url: str, api_key: str, items: Iterator[str], sink: DirectorySink, rate: float | None
) -> tuple[int, int, list[float]]:
    """(ok, failed, lags): the batch, and the timer's lag in seconds, tick by tick."""
    lags: list[float] = []
    done = anyio.Event()

    async def probe() -> None:
        while not done.is_set():
            due = anyio.current_time() + TICK
            await anyio.sleep(TICK)
            lags.append(max(0.0, anyio.current_time() - due))

    async with anyio.create_task_group() as tg:
        tg.start_soon(probe)
        out = await sdk_batch(
            base_url, api_key, items, concurrency=CONCURRENCY, sink=sink, rate=rate, burst=1
        )
        done.set()
    return out.ok, out.failed, lags


def _sink_for(side: str, directory: Path) -> DirectorySink:
    kinds: dict[str, Callable[[Path], DirectorySink]] = {
        "slow on-loop": OnLoopSink,
        "slow anyio.Path": AnyioPathSink,
    }
    return kinds.get(side, DirectorySink)(directory)


def _one_run(
    emu: Emulator, side: str, items: Iterator[str], rate: float | None
) -> tuple[int, int, list[float], float]:
    """(ok, failed, lags, wall seconds) of one side's batch into a fresh directory."""
    directory = Path(tempfile.mkdtemp(prefix="freepik-bg-slowdisk-"))
    disk = slow_disk() if side != "fast" else contextlib.nullcontext()
    try:
        with disk:
            started = time.perf_counter()
            ok, failed, lags = anyio.run(
                _batch_with_probe,
                emu.base_url,
                emu.api_key,
                items,
                _sink_for(side, directory),
                rate,
            )
            return ok, failed, lags, time.perf_counter() - started
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def run(settings: Settings, log: Log = quiet) -> ScenarioResult:
    n = settings.slowdisk_n
    result = ScenarioResult(
        key="slowdisk",
        title="7. Slow disk: event-loop lag while a batch writes files",
        description=(
            f"Each side runs twice: N = {n} items unpaced (`rate=None`: throughput), then "
            f"N/2 paced at {PACED_RATE:.0f} POSTs/s (lag), concurrency {CONCURRENCY}, into "
            "real files (a fresh temp directory per run). The slow disk: every `os.replace` "
            f"(one per file) first sleeps {SLOW_SECONDS * 1000:.0f} ms in its thread. Lag = "
            f"how late a {TICK * 1000:.0f} ms periodic timer in the same event loop fires. "
            "Sides: the SDK's `DirectorySink` on the real disk (fast) and on the slow one; "
            "the previous write path (all on the event loop); and `anyio.open_file` / "
            f"`anyio.Path` (a thread hop per operation). {settings.rounds} rounds, order "
            "alternating."
        ),
    )
    by_round: dict[int, dict[str, RunStats]] = {}
    with emulator() as emu:
        warm_up(emu)
        for r, side in alternate(settings.rounds, SIDES):
            stats = RunStats(label=side, n=n, ok=0, elapsed=0.0, cpu=0.0)
            for rate in (None, PACED_RATE):
                tag = f"{side.replace(' ', '_')}{r}{rate}-"
                count = n if rate is None else max(1, n // 2)
                ok, failed, lags, wall = _one_run(emu, side, urls(emu, count, tag=tag), rate)
                key = "unpaced" if rate is None else "paced"
                if rate is None:
                    stats.ok, stats.elapsed = ok, wall
                stats.extra[f"failed_{key}"] = failed
                stats.extra[f"lag_p99_ms_{key}"] = percentile(lags, 0.99) * 1000
                stats.extra[f"lag_max_ms_{key}"] = max(lags, default=0.0) * 1000
            result.runs.append(stats)
            by_round.setdefault(r, {})[side] = stats
            log(
                f"  slowdisk round {r} {side}: {stats.throughput:.0f} items/s; lag p99 "
                f"{stats.extra['lag_p99_ms_paced']:.1f} ms paced, "
                f"{stats.extra['lag_p99_ms_unpaced']:.1f} ms unpaced"
            )
    rounds = [by_round[r] for r in sorted(by_round)]
    tput = tuple(r["slow"].throughput / r["fast"].throughput for r in rounds)
    lag = tuple(r["slow"].extra["lag_p99_ms_paced"] for r in rounds)
    result.comparisons = [
        Comparison(
            "slowdisk: throughput slow disk / fast disk",
            tput,
            ">= 0.9",
            summarize(tput).median >= 0.9,
        ),
        Comparison(
            f"slowdisk: event-loop lag p99 on the slow disk, paced at {PACED_RATE:.0f}/s",
            lag,
            "<= 5 ms",
            summarize(lag).median <= 5.0,
            note="ms, an absolute time",
        ),
    ]
    result.header = [
        "side",
        "items/s, unpaced",
        f"lag p99 ms, paced at {PACED_RATE:.0f}/s",
        f"lag max ms, paced at {PACED_RATE:.0f}/s",
        "lag p99 ms, unpaced",
        "failed",
    ]
    for side in SIDES:
        runs = [r[side] for r in rounds]
        result.table.append(
            [
                side,
                summarize([s.throughput for s in runs]).fmt(".0f"),
                summarize([s.extra["lag_p99_ms_paced"] for s in runs]).fmt(".1f"),
                summarize([s.extra["lag_max_ms_paced"] for s in runs]).fmt(".1f"),
                summarize([s.extra["lag_p99_ms_unpaced"] for s in runs]).fmt(".1f"),
                str(int(sum(s.extra["failed_unpaced"] + s.extra["failed_paced"] for s in runs))),
            ]
        )
    return result
