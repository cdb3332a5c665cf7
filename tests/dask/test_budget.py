"""One rate budget for the cluster, against a naive map_partitions; a worker killed mid-run."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import dask.bag as db
import pytest
from distributed import Client, wait

import freepik_bg
import freepik_bg.dask as fbd
from freepik_bg.testing import Emulator

from ..conftest import KEY
from .conftest import LIMIT, count_429, image_urls

pytestmark = pytest.mark.dask


def _naive(base_url: str, dest: str) -> Any:
    """What users write by hand: the SDK in each partition, each with the whole rate."""

    def run(part: list[str]) -> list[int]:
        report = freepik_bg.remove_backgrounds(
            part, dest, api_key=KEY, base_url=base_url, rate=LIMIT, burst=10
        )
        return [len(report.stored), len(report.failed)]

    return run


def test_one_budget_keeps_the_cluster_near_the_limit_with_few_429s(
    cluster: Client, emu20: Emulator, tmp_path: Path
) -> None:
    n = 400  # ~20 s at the budget: start-up is a small part of it, even on a loaded box
    urls = image_urls(emu20, n, "budget")
    frame = fbd.remove_backgrounds(
        db.from_sequence(urls, npartitions=4),
        tmp_path / "ours",
        api_key=KEY,
        base_url=emu20.base_url,
        rate=LIMIT,
        burst=10,  # under the server's bucket of 20: room for network jitter
    )
    start = time.monotonic()  # end to end: graph submission, start-up and the tail included
    result = frame.compute()
    elapsed = time.monotonic() - start
    ours_posts, ours_429 = emu20.stats.posts, count_429(emu20)

    assert sorted(result["index"]) == list(range(n))
    assert set(result["status"]) == {"ok"}
    assert ours_429 <= 0.05 * ours_posts, (ours_429, ours_posts)
    used = n / elapsed / LIMIT
    assert used >= 0.8, f"{n} items in {elapsed:.1f} s: {used:.0%} of {LIMIT}/s"

    # The same work, hand-rolled: each partition paces itself at the whole rate.
    emu20.reset_stats()
    naive_urls = image_urls(emu20, n // 3, "naive")  # enough to show the 429s
    bag = db.from_sequence(naive_urls, npartitions=4)
    bag.map_partitions(_naive(emu20.base_url, str(tmp_path / "naive"))).compute()
    naive_posts, naive_429 = emu20.stats.posts, count_429(emu20)
    print(
        f"\nours: {n} in {elapsed:.1f} s ({used:.0%} of the budget), {ours_429}/{ours_posts} "
        f"POSTs answered 429; naive map_partitions: {naive_429}/{naive_posts}"
    )
    assert naive_429 / naive_posts > ours_429 / ours_posts
    assert naive_429 > ours_429


def _stored_lines(dest: Path) -> int:
    journals = (dest / ".freepik-bg-dask").glob("partition-*.jsonl")
    return sum(p.read_text().count('"event":"stored"') for p in journals)


def test_a_worker_killed_mid_run_loses_nothing_and_pays_only_its_in_flight_items(
    cluster: Client, emu20: Emulator, tmp_path: Path
) -> None:
    n, concurrency = 120, 6
    urls = image_urls(emu20, n, "kill")
    dest = tmp_path / "out"
    frame = fbd.remove_backgrounds(
        db.from_sequence(urls, npartitions=4),
        dest,
        api_key=KEY,
        base_url=emu20.base_url,
        rate=LIMIT,
        burst=10,
        concurrency=concurrency,
    )
    future = cluster.compute(frame)
    # Both workers are busy with a partition each (4 partitions, 1 thread per worker):
    # wait until a fair share is stored, then kill one of them outright.
    deadline = time.monotonic() + 60
    while _stored_lines(dest) < n // 4:
        assert time.monotonic() < deadline, "the run made no progress"
        assert not future.done(), future
        time.sleep(0.05)
    victim = next(iter(cluster.run(os.getpid).values()))
    os.kill(victim, signal.SIGKILL)
    wait(future, timeout=90)
    result = future.result()

    assert len(result) == n
    assert sorted(result["index"]) == list(range(n))  # a recomputed partition counts once
    assert set(result["status"]) <= {"ok", "skipped"}
    assert set(result["image_url"]) == set(urls)
    outputs = sorted(p.name for p in dest.glob("*.png"))
    assert outputs == sorted({freepik_bg.output_name(u) for u in urls})  # each exactly once
    charged = emu20.stats.credits_charged
    # Only the dead worker's POSTs in flight (at most `concurrency`) were paid twice.
    assert n <= charged <= n + concurrency, charged
