"""Scenario 5, scaling: items per second at concurrency 1, 4, 16, 32 and 64, SDK against raw."""

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
    warm_sides,
    warm_up,
)
from benchmarks._sdk import sdk_batch

SIDES = {"raw": raw_httpx, "sdk": sdk_batch}


def _rounds(settings: Settings, level: int) -> int:
    # One item at a time, a run's throughput moves with every hiccup of the machine
    # (±30 % between runs of one side here, 300 items each): more rounds, and twice the
    # items, to tell a 3 % difference. Even, so that each side runs first as often.
    return max(settings.rounds, 8) if level == 1 and settings.rounds > 1 else settings.rounds


def run(settings: Settings, log: Log = quiet) -> ScenarioResult:
    n = settings.scaling_n
    levels = settings.scaling_levels
    result = ScenarioResult(
        key="scaling",
        title="5. Scaling with concurrency",
        description=(
            f"N = {n} items per run (N/2 at concurrency 1) at concurrency "
            f"{', '.join(map(str, levels))}; SDK `batch(rate=None)` against the raw httpx "
            f"loop, as in scenario 1. {settings.rounds} rounds per level "
            f"({_rounds(settings, 1)} at concurrency 1), order alternating."
        ),
    )
    series: dict[str, dict[int, list[float]]] = {"sdk": {}, "raw": {}}
    with emulator() as emu:
        warm_up(emu)
        for level in levels:
            count = max(1, n // 2) if level == 1 else n
            by_round: dict[int, dict[str, RunStats]] = {}
            warm_sides(emu, SIDES, n=count, concurrency=level)
            for r, label in alternate(_rounds(settings, level), ("raw", "sdk")):
                side = SIDES[label]
                items = urls(emu, count, tag=f"c{level}{label}{r}-")
                out, wall, cpu = measure(
                    partial(side, emu.base_url, emu.api_key, items, concurrency=level)
                )
                stats = RunStats(label=label, n=count, ok=out.ok, elapsed=wall, cpu=cpu)
                stats.extra.update(concurrency=level, failed=out.failed)
                result.runs.append(stats)
                by_round.setdefault(r, {})[label] = stats
                series[label].setdefault(level, []).append(stats.throughput)
                log(f"  scaling c={level} round {r} {label}: {stats.throughput:.0f} items/s")
            rounds = [by_round[r] for r in sorted(by_round)]
            ratios = tuple(x["sdk"].throughput / x["raw"].throughput for x in rounds)
            result.comparisons.append(
                Comparison(
                    f"scaling: throughput SDK / raw at concurrency {level}",
                    ratios,
                    ">= 0.97",
                    summarize(ratios).median >= 0.97,
                )
            )
    result.header = [
        "concurrency",
        "SDK items/s median (min-max)",
        "raw items/s median (min-max)",
        "SDK / raw median (min-max)",
    ]
    for level, comparison in zip(levels, result.comparisons, strict=True):
        result.table.append(
            [
                str(level),
                summarize(series["sdk"][level]).fmt(".0f"),
                summarize(series["raw"][level]).fmt(".0f"),
                comparison.summary.fmt(".3f"),
            ]
        )
    result.plot = {"series": series}
    return result
