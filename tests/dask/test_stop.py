"""Stopping ``freepik-bg remove`` on Dask: a signal drains, a batch-wide failure stops all."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import anyio
import pytest
from distributed import Client

from freepik_bg import SkippedError, output_name
from freepik_bg._cli import main
from freepik_bg._dask_gate import Bucket, ClusterGate
from freepik_bg.testing import Emulator

from ..conftest import CLI, KEY, cli_env, run_cli
from . import _noisy_worker as noisy_worker
from .conftest import image_urls

ROOT = Path(__file__).parents[2]

pytestmark = pytest.mark.dask


def test_a_stopped_bucket_hands_out_no_slot_and_says_why() -> None:
    bucket = Bucket(rate=10, burst=5)
    assert bucket.take() == (0.0, None)
    bucket.stop("the API key was refused")
    bucket.stop("a later reason")  # the first one stays
    assert bucket.take() == (0.0, "the API key was refused")
    gate = ClusterGate(bucket, remote=False)
    with pytest.raises(SkippedError, match="not attempted: the API key was refused"):
        anyio.run(gate.wait)


def test_a_refused_key_stops_every_partition_with_one_line(
    cluster: Client,
    emu: Emulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # It was one "failed" line per URL and exit 1; each partition paid its own 401s.
    monkeypatch.setenv("FREEPIK_API_KEY", "wrong-key")
    listing = tmp_path / "urls.txt"
    listing.write_text("\n".join(image_urls(emu, 12, "refused")) + "\n")
    args = ["remove", str(listing), "-o", str(tmp_path / "out"), "--base-url", emu.base_url]
    args += ["--scheduler", cluster.scheduler.address, "--concurrency", "1"]
    code = main([*args, "--report", str(tmp_path / "r.json")])
    err = capsys.readouterr().err
    assert code == 3, err
    assert err.count("\n") == 2, err  # the summary and the stop
    assert "freepik-bg: stopped: the API key was refused" in err
    assert "Rerun the same command to resume." in err
    # Four partitions on two one-thread workers: at most the two running at the first
    # 401 sent one POST each; the others learned it from the shared budget.
    assert emu.stats.count("post", 401) <= 2
    summary = json.loads((tmp_path / "r.json").read_text())["summary"]
    assert summary["stop_reason"].startswith("the API key was refused")
    assert summary["not_attempted"] >= 10


def _wait_for_posts(emu: Emulator, count: int, proc: subprocess.Popen[str]) -> None:
    # Synchronised on the emulator's counter (POSTs received), not on a guessed delay.
    deadline = time.monotonic() + 120
    while emu.stats.posts < count:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no POST reached the emulator"
        time.sleep(0.02)


def _start(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*CLI, *args],
        env=cli_env(KEY) | (env or {}),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's job is
    )


def _abandon(
    emu: Emulator, args: list[str], env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], str]:
    """Run the command, press Ctrl-C once POSTs are on the wire, and again once it drains;
    the finished process and its stderr."""
    proc = _start(args, env)
    try:
        _wait_for_posts(emu, 3, proc)
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.stderr is not None
        first = proc.stderr.readline()  # synchronised on the drain's own message
        assert first.startswith("freepik-bg: stopping: sending nothing more"), first
        os.killpg(proc.pid, signal.SIGINT)
        _, rest = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    return proc, first + rest


@pytest.mark.parametrize(
    ("sig", "group"),
    [(signal.SIGINT, True), (signal.SIGTERM, False)],
    ids=["Ctrl-C to the process group", "SIGTERM to the command"],
)
def test_a_signal_drains_what_was_paid_for_and_prints_the_resume_command(
    emu: Emulator, tmp_path: Path, sig: signal.Signals, group: bool
) -> None:
    # SIGTERM exited 143 at once, with POSTs paid and never stored (paid again on resume);
    # Ctrl-C killed the workers too: tracebacks, no summary, no resume command.
    emu.configure(latency=1.0)  # answers take a second: POSTs are on the wire at the signal
    urls = image_urls(emu, 30, f"sig{sig}")
    listing = tmp_path / "urls.txt"
    listing.write_text("\n".join(urls) + "\n")
    out = tmp_path / "out"
    args = ["remove", str(listing), "-o", str(out), "--base-url", emu.base_url]
    args += ["--workers", "2", "--rate", "4", "--burst", "2", "--concurrency", "2"]
    proc = _start(args)
    try:
        _wait_for_posts(emu, 3, proc)
        if group:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert "Resume with:\n  freepik-bg remove" in err
    assert "item(s) were not attempted" in err
    paid = emu.stats.credits_charged
    assert 3 <= paid < len(urls)
    # Every POST paid for was drained: stored before the command exited.
    assert len(list(out.glob("*.png"))) == paid
    final = run_cli(args)
    assert final.returncode == 0, final.stderr
    assert emu.stats.credits_charged == len(urls)  # the resume paid for none twice
    assert all((out / output_name(url)).is_file() for url in urls)


def test_a_second_ctrl_c_abandons_what_is_in_flight_and_a_resume_pays_only_for_that(
    emu: Emulator, tmp_path: Path
) -> None:
    """The second signal gives up on the drain: the command exits at once, says what may
    have been billed, and a resume pays again at most for the POSTs then on the wire."""
    emu.configure(latency=1.0)
    urls = image_urls(emu, 30, "abandon")
    listing = tmp_path / "urls.txt"
    listing.write_text("\n".join(urls) + "\n")
    out = tmp_path / "out"
    workers, concurrency = 2, 2
    args = ["remove", str(listing), "-o", str(out), "--base-url", emu.base_url]
    args += ["--workers", str(workers), "--rate", "4", "--burst", "2"]
    args += ["--concurrency", str(concurrency)]
    proc, err = _abandon(emu, args)
    assert proc.returncode == 130, err
    assert "Traceback" not in err, err  # nor distributed's warnings of its cancelled tasks
    assert "WARNING" not in err
    assert "freepik-bg: abandoning items in flight" in err
    assert "may have been billed" in err
    paid = emu.stats.credits_charged
    assert paid < len(urls)
    final = run_cli(args)
    assert final.returncode == 0, final.stderr
    assert all((out / output_name(url)).is_file() for url in urls)
    # Paid twice at most: the POSTs on the wire when the run was abandoned.
    assert emu.stats.credits_charged <= len(urls) + workers * concurrency


def test_what_the_workers_write_as_an_abandoned_cluster_closes_stays_off_the_terminal(
    emu: Emulator, tmp_path: Path
) -> None:
    # The test above failed 1 run in ~3-10: closing the local cluster under the abandoned
    # tasks, a worker still sending data to one already gone logged an ERROR and a
    # traceback to the terminal they share. Here every worker writes as it closes.
    emu.configure(latency=1.0)
    listing = tmp_path / "urls.txt"
    listing.write_text("\n".join(image_urls(emu, 12, "noisy")) + "\n")
    args = ["remove", str(listing), "-o", str(tmp_path / "out"), "--base-url", emu.base_url]
    args += ["--workers", "2", "--rate", "4", "--burst", "2", "--concurrency", "2"]
    # The workers import the preload from this checkout, as the command does freepik_bg.
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    preload = {"DASK_DISTRIBUTED__WORKER__PRELOAD": f'["{noisy_worker.__name__}"]'}
    proc, err = _abandon(emu, args, {**preload, "PYTHONPATH": path})
    assert proc.returncode == 130, err
    assert noisy_worker.NOISE not in err
    assert "Traceback" not in err
    assert err.endswith(f"Interrupted. Resume with:\n  freepik-bg {' '.join(args)}\n"), err
    assert "may have been billed" in err
