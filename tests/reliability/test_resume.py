"""Crash and resume: SIGKILL the CLI mid-batch, rerun it, pay nothing twice.

The emulator runs in a thread of the test process, the CLI in a child process.
Images come from a recording image host, so every POST the emulator processes
shows up there as one fetch of its ``image_url``: that gives POSTs per URL,
which the emulator's own request log does not record.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import freepik_bg
from freepik_bg.testing import Emulator, generate_sample

from ..conftest import CLI, cli_env
from ._servers import OriginServer
from .conftest import KEY, assert_no_key, assert_outputs_valid

ITEMS = 500


def journal_events(path: Path) -> list[dict[str, object]]:
    events: list[dict[str, object]] = []
    if not path.exists():
        return events
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            continue  # a line torn by the kill
    return events


def done_urls(path: Path) -> set[str]:
    return {str(e["url"]) for e in journal_events(path) if e.get("event") == "stored"}


def wait_until(condition: Callable[[], bool], timeout: float) -> None:
    """Poll ``condition`` every 10 ms, failing after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    tick = threading.Event()
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        tick.wait(0.01)


def posted_urls(path: Path) -> set[str]:
    return {str(e["url"]) for e in journal_events(path) if e.get("event") == "posted"}


def fetched(host: OriginServer) -> list[str]:
    return [f"{host.base_url}{r.target}" for r in host.requests if r.method == "GET"]


def test_sigkill_then_resume_pays_nothing_twice(tmp_path: Path) -> None:
    out = tmp_path / "out"
    journal = tmp_path / "journal.jsonl"
    report = tmp_path / "report.json"
    with (
        Emulator(api_key=KEY, fast=True, latency=0.01, download_latency=0.02, seed=5) as emu,
        OriginServer(generate_sample("ball-small.png")) as host,
    ):
        urls = [f"{host.base_url}/img/{i}.png" for i in range(ITEMS)]
        listing = tmp_path / "urls.txt"
        listing.write_text("\n".join(urls) + "\n")
        command = [
            *CLI,
            "remove",
            str(listing),
            "-o",
            str(out),
            "--journal",
            str(journal),
            "--report",
            str(report),
            "--base-url",
            emu.base_url,
            "--concurrency",
            "4",
            "--rate",
            "off",
            "--max-retries",
            "2",
            "-vv",
        ]
        env = cli_env()

        # Run 1: kill it hard once about half the items are done.
        with (tmp_path / "out1.txt").open("w") as o1, (tmp_path / "err1.txt").open("w") as e1:
            proc = subprocess.Popen(command, stdout=o1, stderr=e1, env=env)
            deadline = time.monotonic() + 60
            try:
                while len(done_urls(journal)) < ITEMS // 2:
                    assert time.monotonic() < deadline, "the first run made no progress"
                    try:
                        proc.wait(timeout=0.02)
                    except subprocess.TimeoutExpired:
                        continue
                    raise AssertionError(f"the run ended early ({proc.returncode})")
                proc.send_signal(signal.SIGKILL)
            finally:
                if proc.poll() is None:
                    proc.kill()
                proc.wait(timeout=10)
        assert proc.returncode == -signal.SIGKILL
        done_first = done_urls(journal)
        # Paid for (links in the journal) but not yet downloaded at the kill.
        paid_not_done = posted_urls(journal) - done_first
        assert ITEMS // 4 < len(done_first) < ITEMS, len(done_first)
        leftovers_after_kill = sorted(p.name for p in out.glob("*.part"))

        # POSTs of the killed run still being processed finish (and are billed:
        # see docs/guarantees.md) before the second run is counted.
        wait_until(lambda: emu.stats.posts_in_flight == 0, timeout=10)
        first_run_posts = emu.stats.posts

        # Run 2: the same command, to completion.
        host.clear()
        emu.reset_stats()
        with (tmp_path / "out2.txt").open("w") as o2, (tmp_path / "err2.txt").open("w") as e2:
            second = subprocess.run(command, stdout=o2, stderr=e2, env=env, timeout=60)
        stats = emu.stats
        fetched_second = fetched(host)
    posted_second = [str(r.image_url) for r in stats.log if r.endpoint == "post"]

    assert second.returncode == 0, (tmp_path / "err2.txt").read_text()[-2000:]
    # Zero POSTs for what the first run completed; one per URL otherwise.
    # By the emulator's own record of each POST's image_url...
    assert len(posted_second) == stats.posts
    assert not set(posted_second) & done_first
    assert len(set(posted_second)) == len(posted_second)  # and none POSTed twice
    # ...and, independently, by the image host's record of what the emulator fetched.
    assert not set(fetched_second) & done_first
    assert sorted(fetched_second) == sorted(posted_second)
    assert stats.posts <= ITEMS - len(done_first)
    # Links paid for but not downloaded were fetched without a new POST (they live 300 s).
    assert not set(posted_second) & paid_not_done
    assert stats.posts == ITEMS - len(done_first) - len(paid_not_done)
    assert first_run_posts + stats.posts <= ITEMS + 4  # at most the 4 in flight at the kill
    assert done_urls(journal) == set(urls)

    # Every output is a complete PNG, one per URL. A SIGKILL mid-write can leave a
    # temp file, which the resumed run does not clean up (see the report).
    for name in leftovers_after_kill:
        (out / name).unlink(missing_ok=True)
    outputs = assert_outputs_valid(out)
    assert len(outputs) == ITEMS
    data = json.loads(report.read_text())
    assert data["summary"]["failed"] == 0
    assert data["summary"]["ok"] + data["summary"]["skipped"] == ITEMS

    # The key appears in none of the files or streams the CLI produced (run with -vv).
    texts = [journal.read_text(), report.read_text()]
    texts += [(tmp_path / f).read_text() for f in ("out1.txt", "err1.txt", "out2.txt", "err2.txt")]
    assert_no_key(texts)
    assert "DEBUG" in texts[3]  # -vv really logged at debug level


@pytest.mark.anyio
async def test_resume_with_another_size_does_not_skip_it(tmp_path: Path) -> None:
    """Done is per rendition.

    Regression test: the journal used to mark a URL done whatever rendition was
    stored, so rerunning for ``size="preview"`` (the CLI's ``--size preview`` with
    the same output directory, hence the same default journal) skipped every item
    and reported it stored at a path that did not exist.
    """
    out, journal = tmp_path / "out", tmp_path / "journal.jsonl"
    async with Emulator(api_key=KEY, fast=True) as emu:
        urls = [emu.image_url("ball-small.png") + f"?s={i}" for i in range(3)]
        async with freepik_bg.AsyncClient(KEY, base_url=emu.base_url) as client:
            first = await client.run_batch(urls, out, rate=None, journal=journal)
            assert len(first.stored) == 3
            second = await client.run_batch(urls, out, rate=None, journal=journal, size="preview")
    claimed = [Path(r.location) for r in (*second.stored, *second.skipped) if r.location]
    assert all(path.is_file() for path in claimed), "reported stored, but not there"
    assert len(second.stored) == 3
    assert len(list(out.glob("*.preview.png"))) == 3


def test_sigint_stops_cleanly_and_says_how_to_resume(tmp_path: Path) -> None:
    """Ctrl-C: exit 130, no temp file, a valid journal and report, the resume command."""
    out, journal, report = tmp_path / "out", tmp_path / "j.jsonl", tmp_path / "r.json"
    with Emulator(api_key=KEY, fast=True, latency=0.01, download_latency=0.05) as emu:
        listing = tmp_path / "urls.txt"
        urls = [emu.image_url("ball-small.png") + f"?int={i}" for i in range(200)]
        listing.write_text("\n".join(urls) + "\n")
        command = [
            *(sys.executable, "-m", "freepik_bg", "remove", str(listing), "-o", str(out)),
            *("--journal", str(journal), "--report", str(report), "--rate", "off"),
            *("--base-url", emu.base_url, "--concurrency", "8"),
        ]
        env = {**os.environ, "FREEPIK_API_KEY": KEY}
        with (tmp_path / "err.txt").open("w") as err:
            proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err, env=env)
            try:
                wait_until(lambda: len(done_urls(journal)) >= 20, timeout=30)
                proc.send_signal(signal.SIGINT)
                code = proc.wait(timeout=20)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(timeout=10)
    assert code == 130
    stderr = (tmp_path / "err.txt").read_text()
    assert "Resume with" in stderr
    assert KEY not in stderr
    assert 20 <= len(done_urls(journal)) < 200
    summary = json.loads(report.read_text())["summary"]
    assert summary["interrupted"] is True
    # No temp file; every output complete (one may have landed just before its journal line).
    assert len(assert_outputs_valid(out)) >= len(done_urls(journal))


def test_a_paid_item_whose_download_failed_says_the_rerun_is_free(
    emu: Emulator, tmp_path: Path
) -> None:
    """Paid, then every download attempt cut short: the FAIL line showed only the transport
    error. It says now that the item was paid for and that a rerun within 5 minutes stores
    it without paying; and the rerun does."""
    from freepik_bg.testing import Fault

    from ..conftest import run_cli

    url = emu.image_url("ball-small.png") + "?paid-then-cut=1"
    listing = tmp_path / "urls.txt"
    listing.write_text(url + "\n")
    args = ["remove", str(listing), "-o", str(tmp_path / "out"), "--base-url", emu.base_url]
    charged = emu.stats.credits_charged
    emu.inject("download", *[Fault.truncate()] * 10)
    try:
        first = run_cli([*args, "--progress", "plain", "--max-retries", "2"])
    finally:
        emu.clear_faults()
    assert first.returncode == 1, first.stderr
    fail = next(line for line in first.stdout.splitlines() if line.startswith("FAIL"))
    assert "paid for: its links are in the journal; rerun within 5 minutes" in fail
    assert emu.stats.credits_charged == charged + 1
    again = run_cli(args)
    assert again.returncode == 0, again.stderr
    assert emu.stats.credits_charged == charged + 1  # stored from the journal's links
    assert (tmp_path / "out" / freepik_bg.output_name(url)).is_file()
