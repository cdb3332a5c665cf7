"""Scenario "dask": which cluster budget keeps a Dask cluster closest to the rate (issue #14).

A real ``LocalCluster`` (2 worker processes, one thread each, on 127.0.0.1) and the
emulator in its own process, limited to 20 POSTs/s (bucket 20). The same URLs, in
``Settings.dask_partitions`` partitions, run under each design of
`benchmarks._dask_designs` with ``rate=20, burst=10``, alternating round by round.
Time is end to end, from ``compute`` to the last partition. Then, once per design
with a shared bucket, one worker is killed with SIGKILL mid-run
(for the Actor: the worker that holds it).
"""

from __future__ import annotations

import os
import signal
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks._common import (
    Comparison,
    Log,
    RunStats,
    ScenarioResult,
    Settings,
    alternate,
    emulator,
    quiet,
    summarize,
    urls,
    warm_up,
)
from benchmarks._dask_designs import BucketActor, Design, run_part

LIMIT = 20.0
BURST = 10
WORKERS = 2
SIDES = ("scheduler", "actor", "static", "naive")
LABELS = {
    "scheduler": "bucket in the scheduler (ours)",
    "actor": "bucket in a Dask Actor",
    "static": "static split, rate/2 each",
    "naive": "naive, full rate each",
}


@contextmanager
def _cluster() -> Iterator[Any]:
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=WORKERS,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            # The scheduler's HTTP server runs even without the dashboard, on port 8787
            # unless told: with another cluster there (a parallel run), a warning.
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
        ) as local,
        Client(local) as client,
    ):
        # The workers import the SDK once, as a long-lived cluster has.
        client.run(lambda: __import__("benchmarks._dask_designs"))
        yield client


def _design(client: Any, side: str, tag: str) -> Design:
    if side == "scheduler":
        return Design("scheduler", LIMIT, BURST, name=f"bench-{tag}")
    if side == "actor":
        actor = client.submit(BucketActor, LIMIT, BURST, actor=True, key=f"bucket-{tag}").result()
        return Design("actor", LIMIT, BURST, actor=actor)
    if side == "static":
        return Design("static", LIMIT / WORKERS, max(1, BURST // WORKERS))
    return Design("naive", LIMIT, BURST)


def _submit(
    client: Any, emu: Any, items: list[str], dest: Path, design: Design, partitions: int
) -> Any:
    import dask.bag as db

    bag = db.from_sequence(items, npartitions=partitions)
    graph = bag.map_partitions(run_part, str(dest), design, emu.api_key, emu.base_url)
    return client.compute(graph)


def _stats(emu: Any, side: str, n: int, elapsed: float, ok: int) -> RunStats:
    stats = emu.stats
    posts = stats.count("post")
    throttled = stats.count("post", 429)
    run = RunStats(label=side, n=n, ok=ok, elapsed=elapsed, cpu=0.0)
    run.extra.update(
        posts=posts,
        throttled=throttled,
        share_429=throttled / posts if posts else 0.0,
        used=ok / elapsed / LIMIT if elapsed > 0 else 0.0,
        charged=stats.credits_charged,
    )
    return run


def _kill_run(
    client: Any, emu: Any, side: str, n: int, tmp: Path, log: Log, partitions: int
) -> tuple[RunStats, str]:
    """One run with a worker SIGKILLed once a quarter of the items are stored."""
    from distributed import wait

    dest = tmp / f"kill-{side}"
    dest.mkdir()
    items = list(urls(emu, n, tag=f"kill-{side}-"))
    design = _design(client, side, f"kill-{side}")
    pids: dict[str, int] = client.run(os.getpid)
    victim = design.actor._address if side == "actor" else sorted(pids)[0]
    emu.reset_stats()
    start = time.perf_counter()
    future = _submit(client, emu, items, dest, design, partitions)
    deadline = start + 120
    while len(list(dest.glob("*.png"))) < n // 4 and not future.done():
        if time.perf_counter() > deadline:
            break
        time.sleep(0.05)
    os.kill(pids[victim], signal.SIGKILL)
    outcome = "completed"
    try:
        wait(future, timeout=60)
        future.result()
    except Exception as exc:  # what the user of this design would see
        outcome = f"raised {type(exc).__name__}"
    elapsed = time.perf_counter() - start
    if not future.done():
        outcome = "hung (gave up after 60 s)"
        future.cancel()
    stored = len(list(dest.glob("*.png")))
    run = _stats(emu, f"{side} + kill", n, elapsed, stored)
    log(f"  dask kill {side}: {outcome}, {stored}/{n} stored in {elapsed:.1f} s")
    run.extra["completed"] = 1.0 if outcome == "completed" else 0.0
    client.wait_for_workers(WORKERS, timeout=60)  # the nanny restarts the killed worker
    return run, outcome


def run(settings: Settings, log: Log = quiet) -> ScenarioResult:
    n, parts = settings.dask_n, settings.dask_partitions
    result = ScenarioResult(
        key="dask",
        title="Dask: one rate budget for a cluster, four designs",
        description=(
            f"LocalCluster of {WORKERS} worker processes (1 thread each) on 127.0.0.1; emulator "
            f"in its own process limited to {LIMIT:.0f} POSTs/s (bucket 20). N = {n} URLs in "
            f"{parts} partitions per run, `rate={LIMIT:.0f}, burst={BURST}` for the cluster. "
            "Designs: " + "; ".join(f"{k}: {v}" for k, v in LABELS.items()) + ". Budget used "
            f"is items stored per second end to end (from `compute` to the last partition) over "
            f"{LIMIT:.0f}/s. {settings.rounds} rounds, order alternating; the server's bucket "
            f"refills ({settings.refill_pause:g} s idle) before each run."
        ),
    )
    by_round: dict[int, dict[str, RunStats]] = {}
    with emulator() as emu, _cluster() as client, tempfile.TemporaryDirectory() as tmp:
        warm_up(emu)
        emu.configure(rate=LIMIT, burst=20)
        for r, side in alternate(settings.rounds, SIDES):
            time.sleep(settings.refill_pause)
            items = list(urls(emu, n, tag=f"{side}r{r}-"))
            dest = Path(tmp) / f"{side}-{r}"
            dest.mkdir()
            design = _design(client, side, f"{side}-{r}")
            emu.reset_stats()
            start = time.perf_counter()
            ok = sum(_submit(client, emu, items, dest, design, parts).result())
            stats = _stats(emu, side, n, time.perf_counter() - start, ok)
            result.runs.append(stats)
            by_round.setdefault(r, {})[side] = stats
            log(
                f"  dask round {r} {side}: {stats.extra['used']:.0%} of the budget, "
                f"{stats.extra['throttled']:.0f}/{stats.extra['posts']:.0f} POSTs got 429, "
                f"{stats.elapsed:.1f} s"
            )
        kills: list[tuple[RunStats, str]] = []
        if settings.dask_kill:
            for side in ("scheduler", "actor"):
                time.sleep(settings.refill_pause)
                kills.append(_kill_run(client, emu, side, n, Path(tmp), log, parts))
    _summarize(result, [by_round[r] for r in sorted(by_round)], kills)
    return result


def _summarize(
    result: ScenarioResult, rounds: list[dict[str, RunStats]], kills: list[tuple[RunStats, str]]
) -> None:
    def series(side: str, key: str) -> tuple[float, ...]:
        return tuple(r[side].extra[key] for r in rounds)

    ours_used, ours_share = series("scheduler", "used"), series("scheduler", "share_429")
    naive_share = summarize(series("naive", "share_429")).median
    result.comparisons += [
        Comparison(
            "dask: ours (scheduler bucket) budget used", ours_used, ">= 0.8",
            summarize(ours_used).median >= 0.8,
        ),
        Comparison(
            "dask: ours share of POSTs answered 429", ours_share, "<= 0.05",
            summarize(ours_share).median <= 0.05, note="a share, not a ratio",
        ),
        Comparison(
            "dask: ours / actor, items per second",
            tuple(r["scheduler"].throughput / r["actor"].throughput for r in rounds),
            ">= 0.9 (as close to the rate)", None,
        ),
        Comparison(
            "dask: ours / static split, items per second",
            tuple(r["scheduler"].throughput / r["static"].throughput for r in rounds),
            "> 1", None,
        ),
        Comparison(
            "dask: naive share of POSTs answered 429", series("naive", "share_429"),
            "> ours", naive_share > summarize(ours_share).median, note="a share, not a ratio",
        ),
    ]  # fmt: skip
    result.header = [
        "design",
        "budget used median (min-max)",
        "429 share median (min-max)",
        "wall s median (min-max)",
        "stored / N",
    ]
    for side in SIDES:
        runs = [r[side] for r in rounds]
        result.table.append(
            [
                LABELS[side],
                summarize([s.extra["used"] for s in runs]).fmt(".2f"),
                summarize([s.extra["share_429"] for s in runs]).fmt(".3f"),
                summarize([s.elapsed for s in runs]).fmt(".1f"),
                f"{sum(s.ok for s in runs)} / {sum(s.n for s in runs)}",
            ]
        )
    for run, outcome in kills:
        result.runs.append(run)
        result.notes.append(
            f"{run.label} (one worker SIGKILLed at a quarter of the items): {outcome}; "
            f"{run.ok} of {run.n} stored in {run.elapsed:.1f} s, "
            f"{run.extra['throttled']:.0f}/{run.extra['posts']:.0f} POSTs answered 429, "
            f"{run.extra['charged']:.0f} credits charged"
        )
