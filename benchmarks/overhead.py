"""Scenario 1, overhead: full-item throughput and client CPU per item, SDK against raw httpx.

Both sides POST then stream the ``high_resolution`` link into a byte counter, at
concurrency 32, with no client-side rate limit (``rate=None``).
"""

from __future__ import annotations

from functools import partial

from benchmarks._baselines import raw_httpx
from benchmarks._common import (
    Comparison,
    Log,
    RunStats,
    ScenarioResult,
    Settings,
    alternate,
    emulator,
    measure,
    quiet,
    summarize,
    urls,
    warm_up,
)
from benchmarks._sdk import sdk_batch

CONCURRENCY = 32


def run(settings: Settings, log: Log = quiet) -> ScenarioResult:
    n = settings.overhead_n
    result = ScenarioResult(
        key="overhead",
        title="1. Overhead: SDK batch against a raw httpx loop",
        description=(
            f"N = {n} items per run, concurrency {CONCURRENCY}, POST then download into a "
            "byte counter on both sides; SDK `batch(rate=None, overwrite=True)` into a "
            "discarding sink, raw = `anyio.Semaphore` + `httpx.AsyncClient` (same pool size, "
            f"64). {settings.rounds} rounds, order alternating (ABBA)."
        ),
    )
    by_round: dict[int, dict[str, RunStats]] = {}
    with emulator() as emu:
        warm_up(emu)
        for r, label in alternate(settings.rounds, ("raw", "sdk")):
            items = urls(emu, n, tag=f"{label}{r}-")
            side = sdk_batch if label == "sdk" else raw_httpx
            out, wall, cpu = measure(
                partial(side, emu.base_url, emu.api_key, items, concurrency=CONCURRENCY)
            )
            stats = RunStats(label=label, n=n, ok=out.ok, elapsed=wall, cpu=cpu)
            stats.extra["failed"] = out.failed
            result.runs.append(stats)
            by_round.setdefault(r, {})[label] = stats
            log(
                f"  overhead round {r} {label}: {stats.throughput:.0f} items/s, "
                f"{stats.cpu_per_item_ms:.3f} ms CPU/item, {out.failed} failed"
            )
    rounds = [by_round[r] for r in sorted(by_round)]
    tput = tuple(r["sdk"].throughput / r["raw"].throughput for r in rounds)
    cpu_ratio = tuple(r["sdk"].cpu_per_item_ms / r["raw"].cpu_per_item_ms for r in rounds)
    result.comparisons = [
        Comparison(
            "overhead: throughput SDK / raw",
            tput,
            ">= 0.95",
            summarize(tput).median >= 0.95,
        ),
        Comparison(
            "overhead: CPU per item SDK / raw",
            cpu_ratio,
            "<= 1.10",
            summarize(cpu_ratio).median <= 1.10,
        ),
    ]
    result.header = ["side", "items/s median (min-max)", "CPU ms/item median (min-max)", "failed"]
    for label in ("sdk", "raw"):
        runs = [r[label] for r in rounds]
        result.table.append(
            [
                label,
                summarize([s.throughput for s in runs]).fmt(".0f"),
                summarize([s.cpu_per_item_ms for s in runs]).fmt(".3f"),
                str(int(sum(s.extra["failed"] for s in runs))),
            ]
        )
    return result
