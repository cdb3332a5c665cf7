"""Scenario "transports": the SDK on httpx's own transport and on aiohttp's, with the raw
loops of both libraries, side by side at concurrency 32 (asyncio).

Four sides, rounds interleaved: raw httpx, SDK (`http_backend="httpx"`), SDK
(`http_backend="aiohttp"`), raw aiohttp. All POST then stream the result link into a
byte counter, as in scenario 1.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from benchmarks._baselines import raw_aiohttp, raw_httpx
from benchmarks._common import (
    Comparison,
    Log,
    ScenarioResult,
    Settings,
    emulator,
    measure_sides,
    quiet,
    summarize,
    warm_up,
)
from benchmarks._sdk import sdk_batch

CONCURRENCY = 32
SIDES = ("raw httpx", "sdk httpx", "sdk aiohttp", "raw aiohttp")
_RUNNERS: dict[str, Callable[..., Awaitable[Any]]] = {
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
    with emulator() as emu:
        warm_up(emu)
        rounds = measure_sides(
            "transports",
            result,
            emu,
            _RUNNERS,
            rounds=settings.rounds,
            n=n,
            concurrency=CONCURRENCY,
            log=log,
        )

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
