"""Scenario 2, memory at scale: client peak RSS for N = 1,000 and N = 100,000 lazy URLs.

Each case runs in a fresh subprocess (``benchmarks._memchild``) so cases do not share a
heap; peak RSS is that process's ``ru_maxrss``. The small case runs every round, the
large one once (it is the slow one); the ratio's range comes from the small case's spread.
"""

from __future__ import annotations

from benchmarks._common import (
    Comparison,
    Log,
    RunStats,
    ScenarioResult,
    Settings,
    emulator,
    quiet,
    run_child,
    summarize,
    warm_up,
)

LIMIT_MIB = 150.0


def _child(base_url: str, api_key: str, n: int, timeout: float) -> dict[str, float]:
    return run_child("benchmarks._memchild", [base_url, api_key, n], timeout)


def run(settings: Settings, log: Log = quiet) -> ScenarioResult:
    small, large = settings.memory_ns
    result = ScenarioResult(
        key="memory",
        title="2. Memory at scale: peak RSS of the client process",
        description=(
            f"SDK `batch` over {small:,} and {large:,} lazily generated URLs (a generator), "
            "concurrency 32, `rate=None`, into a sink that counts bytes and keeps nothing; "
            "results are consumed and dropped as they arrive. Each case is a fresh "
            f"subprocess; peak RSS is its `ru_maxrss`. The {small:,} case runs "
            f"{settings.rounds}x, the {large:,} case once."
        ),
    )
    smalls: list[float] = []
    big: dict[str, float] = {}
    with emulator() as emu:
        warm_up(emu)
        for r in range(settings.rounds):
            data = _child(emu.base_url, emu.api_key, small, timeout=300)
            smalls.append(data["peak_rss_mib"])
            result.runs.append(
                RunStats("sdk", small, int(data["ok"]), data["elapsed"], 0.0, extra=data)
            )
            log(f"  memory round {r} N={small}: {data['peak_rss_mib']:.1f} MiB")
        emu.reset_stats()  # keep the emulator's request log from mattering
        big = _child(emu.base_url, emu.api_key, large, timeout=1200)
        result.runs.append(RunStats("sdk", large, int(big["ok"]), big["elapsed"], 0.0, extra=big))
        log(
            f"  memory N={large}: {big['peak_rss_mib']:.1f} MiB, "
            f"{big['ok']:.0f} ok in {big['elapsed']:.0f} s"
        )
    ratios = tuple(big["peak_rss_mib"] / s for s in smalls)
    result.comparisons = [
        Comparison(
            f"memory: peak RSS N={large:,} / N={small:,}",
            ratios,
            "<= 1.25",
            summarize(ratios).median <= 1.25,
        ),
        Comparison(
            f"memory: peak RSS at N={large:,}, MiB",
            (big["peak_rss_mib"],),
            f"< {LIMIT_MIB:.0f} MiB",
            big["peak_rss_mib"] < LIMIT_MIB,
            note="an absolute value, not a ratio",
        ),
    ]
    result.header = ["N", "runs", "peak RSS MiB median (min-max)", "ok", "failed", "wall s"]
    for n, runs in ((small, result.runs[:-1]), (large, result.runs[-1:])):
        result.table.append(
            [
                f"{n:,}",
                str(len(runs)),
                summarize([s.extra["peak_rss_mib"] for s in runs]).fmt(".1f"),
                str(sum(s.ok for s in runs)),
                str(int(sum(s.extra["failed"] for s in runs))),
                summarize([s.elapsed for s in runs]).fmt(".1f"),
            ]
        )
    result.plot = {"memory": {f"{small:,}": smalls, f"{large:,}": [big["peak_rss_mib"]]}}
    return result
