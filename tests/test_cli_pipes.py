"""INPUT as a pipe (a FIFO, ``<(...)``, ``/dev/stdin``), and a stdout whose reader is gone."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
from pathlib import Path

from freepik_bg import output_name
from freepik_bg.testing import Emulator

from .conftest import CLI, KEY, cli_env, run_cli


def _urls(emu: Emulator, n: int) -> list[str]:
    return [f"{emu.image_url('ball-small.png')}?pipe={i}" for i in range(n)]


def _stored_once_each(emu: Emulator, out: Path, urls: list[str], credits: int) -> None:
    assert all((out / output_name(url)).read_bytes().startswith(b"\x89PNG") for url in urls)
    assert emu.stats.credits_charged - credits == len(urls)


def test_a_named_fifo_is_read_once_and_every_url_is_processed(
    emu: Emulator, tmp_path: Path
) -> None:
    # The scan before the run used to drain the FIFO, then reopen it and wait forever.
    urls = _urls(emu, 5)
    fifo = tmp_path / "urls.fifo"
    os.mkfifo(fifo)

    def write() -> None:
        with open(fifo, "w") as writer:  # blocks until the CLI opens the FIFO to read
            writer.write("\n".join(urls) + "\n")

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    credits = emu.stats.credits_charged
    try:
        result = subprocess.run(
            [*CLI, "remove", str(fifo), "-o", str(tmp_path / "out"), "--base-url", emu.base_url],
            env=cli_env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        if writer.is_alive():  # the CLI never opened it: let the writer go
            os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))
        writer.join(timeout=10)
    assert result.returncode == 0, result.stderr
    assert "5 stored" in result.stdout
    _stored_once_each(emu, tmp_path / "out", urls, credits)


def test_a_pipe_passed_as_dev_fd_is_processed(emu: Emulator, tmp_path: Path) -> None:
    # `freepik-bg remove <(cat urls.txt) ...`: the shell passes /dev/fd/N.
    urls = _urls(emu, 5)
    read, write = os.pipe()
    os.write(write, ("\n".join(urls) + "\n").encode())
    os.close(write)
    credits = emu.stats.credits_charged
    out, report = tmp_path / "out", tmp_path / "r.json"
    try:
        args = ["remove", f"/dev/fd/{read}", "-o", str(out), "--base-url", emu.base_url]
        result = subprocess.run(
            [*CLI, *args, "--report", str(report)],
            env=cli_env(),
            pass_fds=(read,),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(read)
    assert result.returncode == 0, result.stderr
    assert '"total": 5' in report.read_text()
    _stored_once_each(emu, out, urls, credits)


def test_dev_stdin_fed_by_a_pipe_is_processed_and_planned(emu: Emulator, tmp_path: Path) -> None:
    urls = _urls(emu, 5)
    listing = "\n".join(urls) + "\n"
    args = ["remove", "/dev/stdin", "-o", str(tmp_path / "out"), "--base-url", emu.base_url]
    plan = run_cli([*args, "--dry-run"], stdin=listing)
    assert plan.returncode == 0, plan.stderr
    assert "5 item(s) read" in plan.stdout
    credits = emu.stats.credits_charged
    result = run_cli(args, stdin=listing)
    assert result.returncode == 0, result.stderr
    _stored_once_each(emu, tmp_path / "out", urls, credits)


def test_a_closed_stdout_stops_the_run_cleanly_and_keeps_the_report(tmp_path: Path) -> None:
    # `freepik-bg remove ... | head -1`: the reader goes away mid-run.
    with Emulator(fast=True, api_key=KEY, latency=0.05) as slow:
        urls = [f"{slow.image_url('ball-small.png')}?head={i}" for i in range(40)]
        (tmp_path / "urls.txt").write_text("\n".join(urls) + "\n")
        out, report = tmp_path / "out", tmp_path / "r.json"
        args = [
            "remove",
            "urls.txt",
            "-o",
            "out",
            "--base-url",
            slow.base_url,
            "--report",
            "r.json",
        ]
        proc = subprocess.Popen(
            [*CLI, *args, "--concurrency", "2", "--progress", "plain"],
            cwd=tmp_path,
            env=cli_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        assert proc.stderr is not None
        assert proc.stdout.readline().startswith("ok")
        proc.stdout.close()
        stderr = proc.stderr.read()
        assert proc.wait(timeout=60) == 3, stderr
        assert "Traceback" not in stderr
        assert "Exception ignored" not in stderr
        assert "stopped: standard output was closed (Broken pipe)" in stderr
        assert "Rerun the same command to resume." in stderr
        assert "done: " in stderr  # the summary, on stderr now
        data = json.loads(report.read_text())
        assert "standard output was closed" in data["summary"]["stop_reason"]
        posted = {r.image_url for r in slow.stats.log if r.endpoint == "post"}
        assert len(posted) < len(urls)  # nothing more was sent once no one read
        # Every item paid for was stored, and the report says where.
        assert all((out / output_name(url)).is_file() for url in posted)
        stored = {item["url"] for item in data["items"] if item["status"] == "ok"}
        assert stored == posted


def test_a_dry_run_into_a_closed_pipe_says_so_without_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "urls.txt").write_text("https://example.com/a.png\n")
    read, write = os.pipe()
    os.close(read)  # `--dry-run | true`: the reader is gone before the plan is printed
    try:
        result = subprocess.run(
            [*CLI, "remove", "urls.txt", "-o", "out", "--dry-run"],
            cwd=tmp_path,
            env=cli_env(),
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write)
    assert result.returncode == 3, result.stderr
    assert result.stderr.startswith("freepik-bg: stopped: standard output was closed")
    assert "Traceback" not in result.stderr
    assert "Exception ignored" not in result.stderr


def test_a_stdin_run_says_its_resume_needs_the_list_again(tmp_path: Path) -> None:
    with Emulator(fast=True, api_key=KEY, latency=0.05) as slow:
        urls = [f"{slow.image_url('ball-small.png')}?again={i}" for i in range(40)]
        args = ["remove", "-", "-o", "out", "--base-url", slow.base_url, "--concurrency", "2"]
        proc = subprocess.Popen(
            [*CLI, *args, "--progress", "plain"],
            cwd=tmp_path,
            env=cli_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdin is not None
        assert proc.stdout is not None
        proc.stdin.write("\n".join(urls) + "\n")
        proc.stdin.close()
        assert proc.stdout.readline().startswith("ok")
        proc.send_signal(signal.SIGINT)
        assert proc.stderr is not None
        proc.stdout.read()  # to its end: the run drains, then exits
        stderr = proc.stderr.read()
        assert proc.wait(timeout=30) == 130, stderr
    resume = stderr.split("Resume with:")[1].strip().splitlines()
    assert resume[0].startswith("freepik-bg remove - -o out ")
    assert resume[1] == "(feed it the same list on standard input again)"


def test_a_stopped_stdin_run_says_its_rerun_needs_the_list_again(
    emu: Emulator, tmp_path: Path
) -> None:
    urls = _urls(emu, 3)
    args = ["remove", "-", "-o", str(tmp_path / "out"), "--base-url", emu.base_url]
    refused = run_cli(args, key="wrong-key", stdin="\n".join(urls) + "\n")
    assert refused.returncode == 3, refused.stderr
    assert refused.stderr.rstrip().endswith(
        "Rerun the same command to resume (feed it the same list on standard input again)."
    )
