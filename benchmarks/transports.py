"""Scenario "transports": the SDK on httpx's own transport and on aiohttp's, with the raw
loops of both libraries, side by side at concurrency 32 (asyncio).

Four sides, rounds interleaved: raw httpx, SDK (`http_backend="httpx"`), SDK
(`http_backend="aiohttp"`), raw aiohttp. All POST then stream the result link into a
byte counter, as in scenario 1.
"""

from __future__ import annotations

from functools import partial

from benchmarks._baselines import raw_aiohttp, raw_httpx
from benchmarks._common import (
    Comparison,
    Log,
    RunStats,
    ScenarioResult,
    Settings,
    emulator,
    measure,
    quiet,
    summarize,
    urls,
    warm_up,
)
from benchmarks._sdk import sdk_batch

CONCURRENCY = 32
SIDES = ("raw httpx", "sdk httpx", "sdk aiohttp", "raw aiohttp")
_RUNNERS = {
    "raw httpx": raw_httpx,
    "sdk httpx": partial(sdk_batch, http_backend="httpx"),
    "sdk aiohttp": partial(sdk_batch, http_backend="aiohttp"),
    "raw aiohttp": raw_aiohttp,
}


def run(settings: Settings, log: Log = quiet) -> ScenarioResult:
    n = settings.transports_n
    result = ScenarioResult(
        key="transports",
        title="8. Transports: httpx's own and aiohttp's, SDK and raw",
        description=(
            f"N = {n} items per run, concurrency {CONCURRENCY}, asyncio, `rate=None`, into a "
            "byte counter. Sides: the raw httpx loop of scenario 1, the SDK on "
            '`http_backend="httpx"` and on `"aiohttp"` (httpx-aiohttp), and the same raw '
            f"loop written for aiohttp. {settings.rounds} rounds, the order of the four sides "
            "reversed every other round."
        ),
    )
    by_round: dict[int, dict[str, RunStats]] = {}
    with emulator() as emu:
        warm_up(emu)
        for r in range(settings.rounds):
            for label in SIDES if r % 2 == 0 else SIDES[::-1]:
                items = urls(emu, n, tag=f"{label.replace(' ', '_')}{r}-")
                run_side = _RUNNERS[label]
                out, wall, cpu = measure(
                    partial(run_side, emu.base_url, emu.api_key, items, concurrency=CONCURRENCY)
                )
                stats = RunStats(label=label, n=n, ok=out.ok, elapsed=wall, cpu=cpu)
                stats.extra["failed"] = out.failed
                result.runs.append(stats)
                by_round.setdefault(r, {})[label] = stats
                log(
                    f"  transports round {r} {label}: {stats.throughput:.0f} items/s, "
                    f"{stats.cpu_per_item_ms:.3f} ms CPU/item, {out.failed} failed"
                )
    rounds = [by_round[r] for r in sorted(by_round)]

    def ratio(a: str, b: str, cpu: bool = False) -> tuple[float, ...]:
        if cpu:
            return tuple(x[a].cpu_per_item_ms / x[b].cpu_per_item_ms for x in rounds)
        return tuple(x[a].throughput / x[b].throughput for x in rounds)

    checks = [
        ("throughput SDK aiohttp / raw httpx", ratio("sdk aiohttp", "raw httpx"), 1.5),
        ("throughput SDK aiohttp / raw aiohttp", ratio("sdk aiohttp", "raw aiohttp"), 0.9),
        ("throughput SDK aiohttp / SDK httpx", ratio("sdk aiohttp", "sdk httpx"), None),
        ("throughput SDK httpx / raw httpx", ratio("sdk httpx", "raw httpx"), 0.97),
    ]
    result.comparisons = [
        Comparison(
            f"transports: {name}",
            values,
            f">= {target}" if target is not None else "(context)",
            summarize(values).median >= target if target is not None else None,
        )
        for name, values, target in checks
    ]
    cpu = ratio("sdk aiohttp", "sdk httpx", cpu=True)
    result.comparisons.append(
        Comparison("transports: CPU per item SDK aiohttp / SDK httpx", cpu, "(context)", None)
    )
    result.header = ["side", "items/s median (min-max)", "CPU ms/item median (min-max)", "failed"]
    for label in SIDES:
        runs = [x[label] for x in rounds]
        result.table.append(
            [
                label,
                summarize([s.throughput for s in runs]).fmt(".0f"),
                summarize([s.cpu_per_item_ms for s in runs]).fmt(".3f"),
                str(int(sum(s.extra["failed"] for s in runs))),
            ]
        )
    return result
