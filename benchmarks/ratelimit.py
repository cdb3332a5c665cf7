"""Scenario 3, a rate-limited server: 20 requests/s, burst 20, 429 with Retry-After.

Three sides, alternating: the SDK with ``rate=20, burst=20`` (the server's limit), the
SDK with ``rate=None`` (no limit given: a slow start, then the rate learned from the
429s, besides the shared pause and AIMD), and a naive semaphore whose tasks each retry
429s with tenacity (random exponential backoff).
Throughput is items stored per second; the 429 share is from the emulator's counters.
"""

from __future__ import annotations

import time
from functools import partial

from benchmarks._baselines import naive_tenacity
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

RATE = 20.0
BURST = 20
CONCURRENCY = 32
SIDES = ("sdk rate=20", "sdk rate=None", "naive tenacity")


def run(settings: Settings, log: Log = quiet) -> ScenarioResult:
    n = settings.rate_n
    result = ScenarioResult(
        key="ratelimit",
        title="3. Rate-limited server: 20 req/s, burst 20, 429 + Retry-After",
        description=(
            f"Emulator token bucket {RATE:.0f}/s, burst {BURST}; N = {n} items per run, "
            f"concurrency {CONCURRENCY}. Sides: SDK `rate=20, burst=20`; SDK `rate=None` "
            "(no limit given: slow start, then the rate it learns from the 429s, with the "
            "429 pause and AIMD); naive semaphore + per-task tenacity retries on 429 "
            "(`wait_random_exponential(0.25, max=8)`, ignores Retry-After). The server's "
            f"bucket refills ({settings.refill_pause:g} s idle) before each run. "
            f"{settings.rounds} rounds, order alternating."
        ),
    )
    by_round: dict[int, dict[str, RunStats]] = {}
    with emulator() as emu:
        warm_up(emu)
        emu.configure(rate=RATE, burst=BURST)
        for r, label in alternate(settings.rounds, SIDES):
            time.sleep(settings.refill_pause)  # let the server's bucket fill up again
            emu.reset_stats()
            items = urls(emu, n, tag=f"s{SIDES.index(label)}r{r}-")
            if label == "naive tenacity":
                out, wall, cpu = measure(partial(naive_tenacity, emu.base_url, emu.api_key, items))
            else:
                rate = RATE if label == "sdk rate=20" else None
                out, wall, cpu = measure(
                    partial(
                        sdk_batch,
                        emu.base_url,
                        emu.api_key,
                        items,
                        concurrency=CONCURRENCY,
                        rate=rate,
                        burst=BURST,
                    )
                )
            stats = emu.stats
            posts = stats.count("post")
            throttled = stats.count("post", 429)
            run_stats = RunStats(label=label, n=n, ok=out.ok, elapsed=wall, cpu=cpu)
            run_stats.extra.update(
                failed=out.failed,
                posts=posts,
                throttled=throttled,
                share_429=throttled / posts if posts else 0.0,
            )
            result.runs.append(run_stats)
            by_round.setdefault(r, {})[label] = run_stats
            log(
                f"  ratelimit round {r} {label}: {run_stats.throughput:.1f} items/s, "
                f"{throttled}/{posts} POSTs got 429, {out.failed} failed"
            )
    rounds = [by_round[r] for r in sorted(by_round)]
    for label in SIDES[:2]:
        tput = tuple(r[label].throughput / RATE for r in rounds)
        share = tuple(r[label].extra["share_429"] for r in rounds)
        vs_naive = tuple(r[label].throughput / r["naive tenacity"].throughput for r in rounds)
        naive_share = summarize([r["naive tenacity"].extra["share_429"] for r in rounds]).median
        result.comparisons += [
            Comparison(
                f"ratelimit: {label} throughput / 20 per s",
                tput,
                ">= 0.9",
                summarize(tput).median >= 0.9,
            ),
            Comparison(
                f"ratelimit: {label} share of POSTs answered 429",
                share,
                "<= 0.05",
                summarize(share).median <= 0.05,
                note="a share, not a ratio",
            ),
            Comparison(
                f"ratelimit: {label} throughput / naive",
                vs_naive,
                "> 1 and fewer 429s",
                summarize(vs_naive).median > 1.0 and summarize(share).median < naive_share,
            ),
        ]
    result.header = [
        "side",
        "items/s median (min-max)",
        "429 share median (min-max)",
        "POSTs per item",
        "failed",
    ]
    for label in SIDES:
        runs = [r[label] for r in rounds]
        result.table.append(
            [
                label,
                summarize([s.throughput for s in runs]).fmt(".1f"),
                summarize([s.extra["share_429"] for s in runs]).fmt(".3f"),
                f"{sum(s.extra['posts'] for s in runs) / max(1, sum(s.n for s in runs)):.2f}",
                str(int(sum(s.extra["failed"] for s in runs))),
            ]
        )
    return result
