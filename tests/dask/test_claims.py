"""One image in several partitions of a Dask computation is paid for once (`_dask_claims`)."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import dask
import dask.bag as db
import dask.dataframe as dd
import pandas as pd
import pytest
from distributed import Client, wait

import freepik_bg
import freepik_bg.dask as fbd
from freepik_bg._cli import main
from freepik_bg._dask_graph import build_frame
from freepik_bg.testing import Emulator

from ..conftest import KEY
from .conftest import frame_records, image_urls

pytestmark = pytest.mark.dask


def _respelled(url: str) -> str:
    """The same image (`freepik_bg.url_identity`), written otherwise."""
    return url.replace("http://", "HTTP://", 1) + "#top"


def _bag(parts: list[list[str]]) -> db.Bag:
    return db.from_delayed([dask.delayed(list)(part) for part in parts])


def _check_shared(rows: list[dict[str, Any]], dest: Path) -> None:
    """Each image stored once, by one row; every other row of it is that row's duplicate,
    as a batch reports one: skipped at the same location, no attempt of its own."""
    by_image: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_image.setdefault(freepik_bg.url_identity(row["image_url"]), []).append(row)
    for image, group in by_image.items():
        paid = [row for row in group if row["status"] == "ok"]
        assert len(paid) == 1, group
        first = paid[0]
        assert first["attempts"] == 1
        assert pd.isna(first["duplicate_of"])
        assert first["location"] == str(dest / freepik_bg.output_name(image))
        for row in group:
            if row is not first:
                assert row["status"] == "skipped", row
                assert row["attempts"] == 0, row
                assert row["duplicate_of"] == first["index"], (row, first)
                assert row["location"] == first["location"]
    assert Path(first["location"]).is_file()


@pytest.mark.parametrize("overwrite", [False, True])
def test_an_image_in_several_partitions_is_paid_once(
    cluster: Client, emu: Emulator, tmp_path: Path, overwrite: bool
) -> None:
    a, b, c, d = image_urls(emu, 4, f"claim-{overwrite}")
    # Partitions 0 and 1 run at once (2 workers) and reach a and b together, each in
    # its own spelling; partition 2 comes after them, when a, c and d are stored.
    parts = [[a, b, c], [_respelled(a), d, _respelled(b)], [a + "#again", c, d]]
    emu.configure(latency=1.0)  # their POSTs overlap: before, a and b were paid twice
    dest = tmp_path / "out"
    frame = fbd.remove_backgrounds(
        _bag(parts), dest, api_key=KEY, base_url=emu.base_url, overwrite=overwrite
    )
    rows = frame_records(frame.compute())

    assert emu.stats.credits_charged == emu.stats.posts == 4
    assert [row["index"] for row in rows] == list(range(9))
    assert [row["image_url"] for row in rows] == [url for part in parts for url in part]
    _check_shared(rows, dest)
    assert len(list(dest.glob("*.png"))) == 4


def test_on_the_local_threaded_scheduler_too(emu: Emulator, tmp_path: Path) -> None:
    a, b = image_urls(emu, 2, "threads")
    parts = [[a, b], [_respelled(b), _respelled(a)], [b]]
    emu.configure(latency=0.5)
    dest = tmp_path / "out"
    frame = fbd.remove_backgrounds(
        _bag(parts), dest, api_key=KEY, base_url=emu.base_url, overwrite=True
    )
    with dask.config.set(scheduler="threads", num_workers=3):
        rows = frame_records(frame.compute())
    assert emu.stats.credits_charged == 2
    _check_shared(rows, dest)


def test_a_repeat_of_an_image_that_failed_unpaid_shares_its_failure(
    cluster: Client, emu: Emulator, tmp_path: Path
) -> None:
    # Not there: the service answers 400 "Failed to download the image", and charges nothing.
    gone = emu.url_for("/samples/no-such-image.png")
    good = image_urls(emu, 2, "failed")
    parts = [[gone, good[0]], [_respelled(gone), good[1]], [gone]]
    emu.configure(latency=1.0)
    frame = fbd.remove_backgrounds(_bag(parts), tmp_path, api_key=KEY, base_url=emu.base_url)
    rows = frame_records(frame.compute())

    assert emu.stats.credits_charged == 2
    # As in a batch: the first one's POST is the only one; its repeats report its error.
    assert emu.stats.count("post", 400) == 1
    failed = [row for row in rows if freepik_bg.url_identity(row["image_url"]) == gone]
    first = [row for row in failed if pd.isna(row["duplicate_of"])]
    assert len(first) == 1
    assert first[0]["attempts"] == 1
    for row in failed:
        assert row["status"] == "failed"
        assert row["error_type"] == "BadRequestError"
        assert "Failed to download the image" in row["error"]
        assert row["error"] == first[0]["error"]
        if row is not first[0]:
            assert row["duplicate_of"] == first[0]["index"]
            assert row["attempts"] == 0
    assert {row["status"] for row in rows if row not in failed} == {"ok"}


def test_a_parquet_input_pays_once_for_an_image_in_two_partitions(
    cluster: Client,
    emu: Emulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FREEPIK_API_KEY", KEY)
    images = image_urls(emu, 3, "parquet")
    # A folder of 4 files: 4 partitions of the same 3 images, each spelled otherwise.
    # Dask may give one worker two of them in a row: the other two still overlap.
    urls = [*images, *map(_respelled, images)]
    urls += [f"{url}#{n}" for n in (2, 3) for url in images]
    table = pd.DataFrame({"image": pd.Series(urls, dtype="string")})
    dd.from_pandas(table, npartitions=4).to_parquet(tmp_path / "in.parquet")
    assert dd.read_parquet(tmp_path / "in.parquet").npartitions == 4
    out, report = tmp_path / "out", tmp_path / "report.json"
    args = ["remove", str(tmp_path / "in.parquet"), "--column", "image", "-o", str(out)]
    args += ["--base-url", emu.base_url, "--workers", "2"]

    # The plan on the package's cluster: a second local cluster costs seconds.
    dry = [*args[:-2], "--scheduler", cluster.scheduler.address, "--dry-run"]
    assert main(dry) == 0
    plan = capsys.readouterr().out
    assert "3 to submit: 3 credit(s)" in plan
    assert "9 duplicate(s)" in plan

    emu.configure(latency=1.0)  # both partitions reach each image at the same time
    assert main([*args, "--report", str(report)]) == 0
    assert "12 URLs: 3 ok, 9 skipped, 0 failed" in capsys.readouterr().err
    assert emu.stats.credits_charged == emu.stats.posts == 3
    items = json.loads(report.read_text())["items"]
    assert [item["url"] for item in items] == urls
    _check_shared([{**item, "image_url": item["url"]} for item in items], out)


def _claims(cluster: Client, job: str) -> dict[str, Any]:
    # Imported here: the tests above run against the code before claims, and fail there.
    from freepik_bg._dask_claims import snapshot
    from freepik_bg._dask_graph import budget_spec

    return snapshot(cluster, budget_spec(job, 20, 10))


def test_a_worker_killed_while_holding_claims_leaves_none_held_forever(
    cluster: Client, emu: Emulator, tmp_path: Path
) -> None:
    n, concurrency = 8, 4
    urls = image_urls(emu, n, "kill-claim")
    # The same images in both partitions, in the same order: the two workers claim the
    # first ones together, and each waits for those the other holds.
    parts = [urls, [_respelled(url) for url in urls]]
    emu.configure(latency=2.0)
    dest = tmp_path / "out"
    job = "kill-claim"
    frame = build_frame(
        _bag(parts),
        dest,
        column=None,
        rate=20,
        burst=10,
        api_key=KEY,
        base_url=emu.base_url,
        options={"concurrency": concurrency},
        job=job,  # named, to watch its claims
    )
    future = cluster.compute(frame)
    deadline = time.monotonic() + 60
    while not ((state := _claims(cluster, job))["held"] and state["waiters"]):
        assert time.monotonic() < deadline, state
        assert not future.done(), future
        time.sleep(0.05)
    pids = cluster.run(os.getpid)
    victim = state["workers"][0]
    os.kill(pids[victim], signal.SIGKILL)
    wait(future, timeout=90)
    rows = frame_records(future.result())

    assert [row["index"] for row in rows] == list(range(2 * n))
    assert {row["status"] for row in rows} <= {"ok", "skipped"}
    assert sorted(p.name for p in dest.glob("*.png")) == sorted(
        {freepik_bg.output_name(url) for url in urls}
    )
    # Only the dead worker's POSTs in flight (at most `concurrency`) were paid twice.
    assert n <= emu.stats.credits_charged <= n + concurrency
    state = _claims(cluster, job)
    assert (state["held"], state["waiters"]) == (0, 0)


def test_a_claim_of_a_dead_or_rerun_attempt_is_void_and_taken_over() -> None:
    from freepik_bg._dask_registry import DONE, FAILED, HELD, MINE, ClaimRegistry

    claims = ClaimRegistry()
    claims.start(0, "first", "tcp://w1")
    claims.start(1, "other", "tcp://w2")
    assert claims.claim(7, 0, "first", 3) == (MINE,)
    woken: list[str] = []
    assert claims.watch(7, 3, lambda: woken.append("7"))
    assert claims.claim(7, 1, "other", 12, alive=lambda worker: True) == (HELD, 3)
    # Its worker has left the cluster: the next claimant takes the image over.
    assert claims.claim(7, 1, "other", 12, alive=lambda worker: worker != "tcp://w1") == (MINE,)
    assert woken == ["7"]
    # Dask runs partition 0 again: what its first attempt held is void, and its own
    # items may do their work again (as they would without claims).
    assert claims.claim(8, 0, "first", 4) == (MINE,)
    claims.start(0, "again", "tcp://w3")
    assert claims.snapshot()["held"] == 1
    assert claims.claim(8, 1, "other", 13) == (MINE,)
    assert claims.claim(7, 0, "again", 3) == (HELD, 12)
    # The void attempt's late word changes nothing; the holder's does.
    claims.settle([(7, 0, "first", 3, True)])
    assert claims.claim(7, 0, "again", 3) == (HELD, 12)
    error = freepik_bg.InvalidRequestError("image_url has no host")
    claims.settle([(7, 1, "other", 12, True), (8, 1, "other", 13, error)])
    assert claims.claim(7, 0, "again", 3) == (DONE, 12)
    assert claims.claim(8, 0, "again", 4) == (FAILED, 13, error)
    assert claims.claim(7, 1, "other", 12) == (MINE,)  # the item itself, computed again


def test_an_attempt_that_ends_leaves_no_claim_held() -> None:
    from freepik_bg._dask_registry import MINE, ClaimRegistry

    claims = ClaimRegistry()
    claims.start(0, "a", None)
    claims.start(1, "b", None)
    assert claims.claim(1, 0, "a", 0) == (MINE,)
    assert claims.claim(2, 0, "a", 1) == (MINE,)
    woken: list[int] = []
    assert claims.watch(2, 1, lambda: woken.append(2))
    # Partition 0 ends: 1 stored, 2 never settled (its task was cut short). Partition
    # 1 asks about two items it found stored: 1 (stored by item 0) and 5 (not by this run).
    assert claims.finish(0, "a", [(1, 0, "a", 0, True)], []) == []
    assert woken == [2]
    assert claims.snapshot()["held"] == 0
    assert claims.finish(1, "b", [], [1, 5]) == [0, -1]
    assert claims.claim(2, 1, "b", 7) == (MINE,)
