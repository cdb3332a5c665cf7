"""Shared pieces: the emulator, run statistics, A/B ratios and the machine description."""

from __future__ import annotations

import datetime
import gc
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

import attrs

from freepik_bg import SinkItem
from freepik_bg.testing import Emulator

T = TypeVar("T")

SAMPLE = "ball-small.png"
"""The smallest sample (160x120): the fast-mode cutout is cached, so the client is measured."""


@attrs.frozen
class Settings:
    """Sizes for one benchmark run (the smoke tests shrink them)."""

    rounds: int = 3
    overhead_n: int = 3000
    memory_ns: tuple[int, ...] = (1_000, 100_000, 1_000_000)
    """The first runs every round; each larger one once (1,000,000 takes ~30 min here)."""
    rate_n: int = 240
    expiry_n: int = 500
    scaling_n: int = 800
    scaling_levels: tuple[int, ...] = (1, 4, 16, 32, 64)
    storage_n: int = 600
    storage_big_ns: tuple[int, int] = (4, 16)
    startup_rounds: int = 10
    slowdisk_n: int = 600
    transports_n: int = 1200
    refill_pause: float = 2.0
    """Seconds the rate-limited server is left idle before each run (its bucket refills)."""
    transform_megapixels: float = 25.0
    transform_n: int = 32
    journal_lines: int = 1_000_000
    journal_append_n: int = 3000
    dask_n: int = 320
    dask_partitions: int = 4
    """4 partitions share 2 workers evenly; 3 leave one worker idle at the tail."""
    dask_kill: bool = True
    """Also kill a worker mid-run, for the two designs with a shared bucket."""

    @classmethod
    def smoke(cls) -> Settings:
        return cls(
            rounds=1,
            overhead_n=20,
            memory_ns=(10, 40),
            rate_n=20,
            expiry_n=20,
            scaling_n=20,
            scaling_levels=(1, 4),
            storage_n=20,
            storage_big_ns=(1, 2),
            startup_rounds=1,
            slowdisk_n=20,
            transports_n=20,
            refill_pause=1.0,
            transform_megapixels=0.25,
            transform_n=4,
            journal_lines=6_000,  # past INDEX_MIN_BYTES, so that it gets a checkpoint
            journal_append_n=20,
            dask_n=16,
            dask_kill=False,
        )


@contextmanager
def emulator(**knobs: Any) -> Iterator[Emulator]:
    """A fast-mode emulator in a child process (its own GIL), bound to 127.0.0.1."""
    with Emulator(process=True, fast=True, host="127.0.0.1", **knobs) as emu:
        yield emu


def urls(emu: Emulator, n: int, tag: str = "") -> Iterator[str]:
    """``n`` distinct URLs of one cached sample, generated lazily."""
    base = emu.image_url(SAMPLE)
    for i in range(n):
        yield f"{base}?{tag}i={i}"


def warm_up(emu: Emulator) -> None:
    """Have the emulator compute and cache the sample's cutout once."""
    import httpx

    with httpx.Client(timeout=30) as http:
        response = http.post(
            emu.api_url,
            data={"image_url": emu.image_url(SAMPLE)},
            headers={"x-freepik-api-key": emu.api_key},
        )
        response.raise_for_status()
        http.get(response.json()["high_resolution"]).raise_for_status()


class DiscardSink:
    """A sink that reads every chunk and keeps only a byte count (same work as raw's loop)."""

    def __init__(self) -> None:
        self.bytes = 0
        self.stored = 0

    async def exists(self, item: SinkItem) -> str | None:
        return None

    async def store(self, item: SinkItem, chunks: AsyncIterator[bytes]) -> str:
        async for chunk in chunks:
            self.bytes += len(chunk)
        self.stored += 1
        return item.name


@attrs.define
class Outcome:
    """What one side's run produced; ``gaps`` are seconds from POST answer to download."""

    ok: int = 0
    failed: int = 0
    posts: int = 0
    throttled: int = 0
    expired: int = 0
    resubmits: int = 0
    bytes: int = 0
    gaps: list[float] = attrs.field(factory=list)


@attrs.define
class RunStats:
    """One run of one side: what a scenario measures."""

    label: str
    n: int
    ok: int
    elapsed: float
    cpu: float
    extra: dict[str, float] = attrs.field(factory=dict)

    @property
    def throughput(self) -> float:
        return self.ok / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def cpu_per_item_ms(self) -> float:
        return 1000.0 * self.cpu / self.ok if self.ok else float("nan")


@attrs.frozen
class Summary:
    median: float
    low: float
    high: float

    def fmt(self, spec: str = ".3f") -> str:
        return f"{self.median:{spec}} ({self.low:{spec}}-{self.high:{spec}})"


def summarize(values: Sequence[float]) -> Summary:
    """Median, min and max."""
    return Summary(statistics.median(values), min(values), max(values))


@attrs.frozen
class Comparison:
    """A ratio B/A (or A/B) measured round by round in the same run, with its target."""

    name: str
    ratios: tuple[float, ...]
    target: str
    met: bool | None
    note: str = ""

    @property
    def summary(self) -> Summary:
        return summarize(self.ratios)


@attrs.define
class ScenarioResult:
    """A scenario's output: the runs, headline comparisons, tables and plot data."""

    key: str
    title: str
    description: str
    runs: list[RunStats] = attrs.field(factory=list)
    comparisons: list[Comparison] = attrs.field(factory=list)
    table: list[list[str]] = attrs.field(factory=list)
    header: list[str] = attrs.field(factory=list)
    plot: dict[str, Any] = attrs.field(factory=dict)
    notes: list[str] = attrs.field(factory=list)

    def well_formed(self) -> bool:
        """Every row has the header's width and every comparison has at least one ratio."""
        return (
            bool(self.header)
            and all(len(row) == len(self.header) for row in self.table)
            and all(c.ratios for c in self.comparisons)
        )


def load_results(path: Path) -> list[ScenarioResult]:
    """The scenario results a ``--json`` dump holds, as they were produced.

    JSON turns the scaling plot's integer keys (concurrency levels) into strings: they
    are turned back. Each result gets a note naming the dump it came from.
    """
    results = []
    for raw in json.loads(path.read_text(encoding="utf-8")):
        result = ScenarioResult(
            key=raw["key"],
            title=raw["title"],
            description=raw["description"],
            runs=[RunStats(**run) for run in raw["runs"]],
            comparisons=[
                Comparison(c["name"], tuple(c["ratios"]), c["target"], c["met"], c["note"])
                for c in raw["comparisons"]
            ],
            table=raw["table"],
            header=raw["header"],
            plot=raw["plot"],
            notes=[
                *raw["notes"],
                "From a separate run (`benchmarks/analysis.md` says of which commit): "
                f"`{path.name}`.",
            ],
        )
        if result.key == "scaling" and "series" in result.plot:
            series = result.plot["series"]
            result.plot["series"] = {
                side: {int(level): values for level, values in levels.items()}
                for side, levels in series.items()
            }
        results.append(result)
    return results


def alternate(rounds: int, labels: Sequence[str]) -> Iterator[tuple[int, str]]:
    """ABAB... order, with the order flipped every other round (ABBA) to cancel drift."""
    for r in range(rounds):
        order = list(labels) if r % 2 == 0 else list(reversed(labels))
        for label in order:
            yield r, label


def warm_sides(
    emu: Emulator,
    sides: Mapping[str, Callable[..., Awaitable[Any]]],
    *,
    n: int,
    concurrency: int,
) -> None:
    """One short run of each side, not measured, before the rounds.

    The first run in a process pays for what httpx and the SDK set up on first use
    (lazy imports, code caches): without this, whichever side ran first in round 0 was
    ~15 % slower there, and the ratio of that round was off by as much.
    """
    count = min(n, max(50, 2 * concurrency))
    for label, side in sides.items():
        items = urls(emu, count, tag=f"warm-{label.replace(' ', '_')}-c{concurrency}-")
        measure(partial(side, emu.base_url, emu.api_key, items, concurrency=concurrency))


def measure_sides(
    key: str,
    result: ScenarioResult,
    emu: Emulator,
    sides: dict[str, Callable[..., Awaitable[Any]]],
    *,
    rounds: int,
    n: int,
    concurrency: int,
    log: Log,
) -> list[dict[str, RunStats]]:
    """Run each side on ``n`` fresh URLs per round, order alternating; the runs by round.

    A side is called as ``side(base_url, api_key, urls, concurrency=...)`` and returns
    something with ``ok`` and ``failed`` counts. Every run is also added to ``result``.
    """
    by_round: dict[int, dict[str, RunStats]] = {}
    warm_sides(emu, sides, n=n, concurrency=concurrency)
    for r, label in alternate(rounds, list(sides)):
        items = urls(emu, n, tag=f"{label.replace(' ', '_')}{r}-")
        side = partial(sides[label], emu.base_url, emu.api_key, items, concurrency=concurrency)
        out, wall, cpu = measure(side)
        stats = RunStats(label=label, n=n, ok=out.ok, elapsed=wall, cpu=cpu)
        stats.extra["failed"] = out.failed
        result.runs.append(stats)
        by_round.setdefault(r, {})[label] = stats
        log(
            f"  {key} round {r} {label}: {stats.throughput:.0f} items/s, "
            f"{stats.cpu_per_item_ms:.3f} ms CPU/item, {out.failed} failed"
        )
    return [by_round[r] for r in sorted(by_round)]


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, str]:
    """CPU model, cores, RAM, Python, OS, package versions and the date."""
    import psutil  # type: ignore[import-untyped]

    versions = {}
    for dist in ("freepik-bg", "httpx", "httpcore", "anyio", "tenacity", "uvicorn", "h11"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "-"
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu_model(),
        "cores": f"{psutil.cpu_count(logical=False)} physical, {os.cpu_count()} logical",
        "ram": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "python": f"{platform.python_implementation()} {sys.version.split()[0]}",
        "os": platform.platform(),
        "packages": ", ".join(f"{k} {v}" for k, v in versions.items()),
    }


def measure(fn: Callable[[], Awaitable[T]]) -> tuple[T, float, float]:
    """Run ``fn`` in a fresh event loop: (its result, wall seconds, client CPU seconds).

    CPU is ``time.process_time()``: this process only (the emulator is another process).
    """
    import anyio

    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    result = anyio.run(fn)
    return result, time.perf_counter() - wall, time.process_time() - cpu


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-quantile (0..1), nearest-rank; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))
    return ordered[rank]


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_child(module: str, args: Sequence[object], timeout: float) -> dict[str, float]:
    """Run ``python -m module args`` in a fresh process; its last stdout line, as JSON."""
    import json
    import subprocess

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-m", module, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
        check=True,
    )
    data: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return data


def child_report(counts: dict[str, float], n: int, elapsed: float) -> None:
    """Print a child's result line with its peak RSS (``ru_maxrss``), for `run_child`."""
    import json
    import resource

    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    if sys.platform == "darwin":  # pragma: no cover - bytes there
        peak_kib //= 1024
    print(json.dumps({**counts, "n": n, "elapsed": elapsed, "peak_rss_mib": peak_kib / 1024}))


Log = Callable[[str], object]


def quiet(_message: str) -> None:
    """A ``log`` that says nothing."""
