"""Scenario 4, expiry pressure: links live 3 s and downloads are slow.

The SDK downloads each item the moment its POST answers (same task). The contrast is
the naive two-phase job: gather every POST, then download every link. The gap is the
time from an item's POST answer to the moment its download request is sent (an httpx
request hook on the SDK side, stamped before the GET on the naive side).
"""

from __future__ import annotations

from functools import partial

from benchmarks._baselines import gather_then_download
from benchmarks._common import (
    Comparison,
    Log,
    RunStats,
    ScenarioResult,
    Settings,
    alternate,
    emulator,
    measure,
    percentile,
    quiet,
    summarize,
    urls,
    warm_up,
)
from benchmarks._sdk import sdk_batch

LINK_TTL = 3.0
LATENCY = 0.2
DOWNLOAD_LATENCY = 0.3
CONCURRENCY = 32
SIDES = ("sdk", "gather then download")


def run(settings: Settings, log: Log = quiet) -> ScenarioResult:
    n = settings.expiry_n
    result = ScenarioResult(
        key="expiry",
        title="4. Expiry pressure: 3 s links, slow downloads",
        description=(
            f"Emulator `link_ttl={LINK_TTL:.0f}`, POST latency {LATENCY} s, download latency "
            f"{DOWNLOAD_LATENCY} s; N = {n}, concurrency {CONCURRENCY}, `rate=None`. "
            "A link is lost when its download finds it expired (the emulator's "
            "`links_expired`; for the SDK also failed items and resubmits, each a credit "
            "spent again). Gap = POST answer to download request sent. "
            f"{settings.rounds} rounds, order alternating."
        ),
    )
    by_round: dict[int, dict[str, RunStats]] = {}
    gaps: dict[str, list[float]] = {side: [] for side in SIDES}
    with emulator(link_ttl=LINK_TTL, latency=LATENCY, download_latency=DOWNLOAD_LATENCY) as emu:
        warm_up(emu)
        for r, label in alternate(settings.rounds, SIDES):
            emu.reset_stats()
            items = urls(emu, n, tag=f"s{SIDES.index(label)}r{r}-")
            if label == "sdk":
                out, wall, cpu = measure(
                    partial(
                        sdk_batch,
                        emu.base_url,
                        emu.api_key,
                        items,
                        concurrency=CONCURRENCY,
                        measure_gaps=True,
                    )
                )
            else:
                out, wall, cpu = measure(
                    partial(
                        gather_then_download,
                        emu.base_url,
                        emu.api_key,
                        items,
                        concurrency=CONCURRENCY,
                    )
                )
            stats = emu.stats
            expired = stats.links_expired
            lost = max(expired, out.failed + out.resubmits)
            run_stats = RunStats(label=label, n=n, ok=out.ok, elapsed=wall, cpu=cpu)
            run_stats.extra.update(
                failed=out.failed,
                expired=expired,
                resubmits=out.resubmits,
                lost=lost,
                credits=stats.credits_charged,
                p50_gap=percentile(out.gaps, 0.5),
                p99_gap=percentile(out.gaps, 0.99),
                max_gap=max(out.gaps, default=float("nan")),
                gaps_measured=len(out.gaps),
            )
            gaps[label].extend(out.gaps)
            result.runs.append(run_stats)
            by_round.setdefault(r, {})[label] = run_stats
            log(
                f"  expiry round {r} {label}: {out.ok} ok, {lost} links lost, "
                f"p99 gap {run_stats.extra['p99_gap']:.3f} s"
            )
    rounds = [by_round[r] for r in sorted(by_round)]
    lost_links = tuple(float(r["sdk"].extra["lost"]) for r in rounds)
    p99 = tuple(r["sdk"].extra["p99_gap"] for r in rounds)
    ratio = tuple(
        r["gather then download"].extra["p99_gap"] / max(r["sdk"].extra["p99_gap"], 1e-6)
        for r in rounds
    )
    result.comparisons = [
        Comparison(
            "expiry: SDK links lost",
            lost_links,
            "= 0",
            max(lost_links) == 0,
            note="a count, not a ratio",
        ),
        Comparison(
            "expiry: SDK p99 gap POST answer -> download, s",
            p99,
            "<= 0.25 s",
            summarize(p99).median <= 0.25,
            note="seconds, not a ratio",
        ),
        Comparison(
            "expiry: p99 gap naive gather / SDK",
            ratio,
            "(context)",
            None,
        ),
    ]
    result.header = [
        "side",
        "ok / N",
        "links lost (total)",
        "p50 gap s",
        "p99 gap s median (min-max)",
        "max gap s",
        "items/s",
    ]
    for label in SIDES:
        runs = [r[label] for r in rounds]
        result.table.append(
            [
                label,
                f"{sum(s.ok for s in runs)} / {sum(s.n for s in runs)}",
                str(int(sum(s.extra["lost"] for s in runs))),
                f"{summarize([s.extra['p50_gap'] for s in runs]).median:.3f}",
                summarize([s.extra["p99_gap"] for s in runs]).fmt(".3f"),
                f"{max(s.extra['max_gap'] for s in runs):.3f}",
                summarize([s.throughput for s in runs]).fmt(".1f"),
            ]
        )
    result.plot = {"gaps": gaps, "ttl": LINK_TTL}
    return result
